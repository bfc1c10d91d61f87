"""The price sheet: what an accelerator-hour, a GB-second and a million tokens cost.

Where the defaults come from (USD, on-demand list prices as of 2025):

- Memory, both kinds: AWS EC2 us-east-1 r7i.large (2 vCPU, 16 GiB) $0.1323/h less
  m7i.large (2 vCPU, 8 GiB) $0.1008/h: 8 GiB cost $0.0315/h, so $0.0039375 per GiB-hour,
  $0.0000010938 per GiB-second. Memory only: compute is billed as accelerator time.
- CPU accelerator (a 2-vCPU host, what runs the backbone on this project's machines):
  c7i.large (2 vCPU, 4 GiB) $0.08925/h less its 4 GiB at the memory price: $0.0735/h.
  Activations are metered in CPU-seconds of their container: two make one accelerator-second.
- H100 accelerator: $2.99 per GPU-hour, the on-demand H100 SXM price of GPU clouds
  (Lambda's 8x H100 instances; RunPod and others list $2.4 to $3.3).
- Tokens: 0 by default, a fee on top of the resources (hosted APIs that bill by tokens
  fold the resources into it; this platform bills the resources themselves).
"""

from __future__ import annotations

from dataclasses import dataclass

from lorafaas.settings import Settings

GB_MB = 1024  # a GB of memory limit is 1024 MB, as Lambda and OpenWhisk count it
MEMORY_GB_SECOND = 0.0039375 / 3600
ACCELERATOR_HOUR = {"cpu": 0.0735, "h100": 2.99}
CPU_ACCELERATOR_VCPUS = 2  # the CPU accelerator priced above is a 2-vCPU host
SOURCES = {
    "cpu": "CPU (2 vCPU): AWS us-east-1 c7i.large $0.08925/h less its 4 GiB of memory",
    "h100": "H100 SXM: on-demand GPU-hour at GPU clouds, 2025",
    "memory": "AWS us-east-1 r7i.large $0.1323/h less m7i.large $0.1008/h, per 8 GiB",
}


@dataclass(frozen=True)
class PriceSheet:
    """Prices in USD; `accelerator_kind` says what an accelerator is."""

    accelerator_kind: str
    accelerator_hour: float
    gb_second: float
    prompt_mtok: float
    completion_mtok: float

    @property
    def cpus_per_accelerator(self) -> float | None:
        """vCPUs of one accelerator where it is CPUs (they are metered in CPU time), else
        None."""
        return CPU_ACCELERATOR_VCPUS if self.accelerator_kind == "cpu" else None

    @property
    def accelerator_second(self) -> float:
        """USD per accelerator-second."""
        return self.accelerator_hour / 3600

    def as_json(self) -> dict[str, float | str]:
        """The sheet as printed in reports."""
        return {"acceleratorKind": self.accelerator_kind,
                "acceleratorHour": self.accelerator_hour, "gbSecond": self.gb_second,
                "promptPerMillionTokens": self.prompt_mtok,
                "completionPerMillionTokens": self.completion_mtok}


def price_sheet(settings: Settings) -> PriceSheet:
    """The configured prices, each unset one taken from the accelerator kind's default."""
    kind = settings.accelerator_kind
    accelerator_hour = settings.price_accelerator_hour
    gb_second = settings.price_gb_second
    return PriceSheet(
        accelerator_kind=kind,
        accelerator_hour=ACCELERATOR_HOUR[kind] if accelerator_hour is None else accelerator_hour,
        gb_second=MEMORY_GB_SECOND if gb_second is None else gb_second,
        prompt_mtok=settings.price_prompt_mtok, completion_mtok=settings.price_completion_mtok)
