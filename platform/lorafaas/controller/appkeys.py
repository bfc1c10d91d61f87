"""Typed application state keys, declared in one place."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lorafaas.backbone.health import BackboneHealth
from lorafaas.backbone.ownership import RunOwner
from lorafaas.controller.action_service import ActionService
from lorafaas.controller.backbones import BackboneCatalog, ServedBackbone
from lorafaas.controller.invocations import InvocationService
from lorafaas.controller.login_throttle import LoginThrottle
from lorafaas.controller.rule_service import RuleService
from lorafaas.controller.trigger_service import TriggerService
from lorafaas.invoking.client import InvokerClient
from lorafaas.settings import Settings

settings_key = web.AppKey("settings", Settings)
login_throttle_key = web.AppKey("login_throttle", LoginThrottle)
sessions_key = web.AppKey("sessions", async_sessionmaker[AsyncSession])
# The invoker(s), reached only through the seam (`lorafaas.invoking.client`).
invoker_key = web.AppKey("invoker", InvokerClient)
actions_key = web.AppKey("actions", ActionService)
invocations_key = web.AppKey("invocations", InvocationService)
# Triggers and rules (and the alarms loop), set up by `trigger_wiring.triggers_and_alarms`.
triggers_key = web.AppKey("triggers", TriggerService)
rules_key = web.AppKey("rules", RuleService)
backbones_key = web.AppKey("backbones", BackboneCatalog)
# The running backbone servers by name, filled by their cleanup contexts.
served_backbones_key = web.AppKey("served_backbones", dict[str, ServedBackbone])
# Up or down, and restarts, of each backbone's server (its supervisor writes it).
backbone_health_key = web.AppKey("backbone_health", BackboneHealth)
# This run's lock on the run directory and its owner id, held from the first context.
run_owner_key = web.AppKey("run_owner", RunOwner)
