"""The `lorafaas` client verbs (wsk's `action`, `activation`, `property`) over the REST API."""

from lorafaas.client.http import ApiClient, ClientError
from lorafaas.client.output import CommandError, Output

__all__ = ["ApiClient", "ClientError", "CommandError", "Output"]
