"""The binder's policy, pure: which pending pods form which gang, what each gang asks
of the placement engine, what to make of an earlier leader's plans, how long an
unschedulable gang waits. The binder controller is the glue around it."""

from egpu.engines.binding.gangs import BadGang, Gang, check_gang, gangs_to_place
from egpu.engines.binding.parking import Parking
from egpu.engines.binding.request import gang_request, pair_with_pods, required_domain, shape_key
from egpu.engines.binding.resume import Resume, split_resumable
from egpu.engines.binding.slots import pod_slots, pod_slots_on
from egpu.engines.binding.start_path import start_path

__all__ = [
    "BadGang",
    "Gang",
    "Parking",
    "Resume",
    "check_gang",
    "gang_request",
    "gangs_to_place",
    "pair_with_pods",
    "pod_slots",
    "pod_slots_on",
    "required_domain",
    "shape_key",
    "split_resumable",
    "start_path",
]
