"""How a stack shares the account's Regional Lambda concurrency quota, and what `pulumi up` refuses of it: the
settings work the budget out (`Settings.concurrency`) and check it, the capacity model and `python -m ops capacity`
read it."""
from __future__ import annotations

from dataclasses import dataclass

from handlers.names import Function

# Lambda keeps part of the Regional quota unreserved for the functions without reserved concurrency: every
# reservation together may leave no less than 100 (Lambda API Reference, PutFunctionConcurrency: "as long as you
# leave at least 100 simultaneous executions unreserved"; Developer Guide, "Configuring reserved concurrency for a
# function"). On an account whose quota is under 100 (new accounts start lower: "Lambda quotas") AWS refuses any
# reservation, naming the whole quota as that minimum ("below its minimum value of [10]").
UNRESERVED_MINIMUM = 100
UNRESERVED_RULE = "100, or the whole quota when it is smaller"  # the rule above, as the refusals and ops say it
# The setting that reserves each function's concurrency, by the budget's name for it.
RESERVING = {"upload API": "uploadApiConcurrency", Function.BACKFILL.value: "backfillConcurrency"}


@dataclass(frozen=True)
class ConcurrencyBudget:
    """How the stack shares the account's Regional Lambda concurrency quota: what it reserves, what its queue-fed
    functions may take from the unreserved pool at once, and what it leaves the account's other functions."""

    quota: int  # accountConcurrency
    reserved: dict[str, int]  # reserved concurrency (ReservedConcurrentExecutions) by function; 0 is never listed
    scaling: dict[str, int]  # each deployed queue-fed function's maxConcurrency (its event source's cap)
    reserve: int  # concurrencyReserve

    @property
    def unreserved_minimum(self) -> int:
        """What Lambda keeps unreserved whatever is reserved: 100, or the whole quota when it is smaller."""
        return min(UNRESERVED_MINIMUM, self.quota)

    @property
    def reservable(self) -> int:
        """The most every reservation in the account together may take."""
        return self.quota - self.unreserved_minimum

    @property
    def stages_pool(self) -> int:
        """The concurrency the queue-fed functions may take at once: neither reserved nor kept for other functions."""
        return self.quota - sum(self.reserved.values()) - self.reserve

    @property
    def room(self) -> int:
        """What is left once every stage runs at its maxConcurrency (negative: the stack does not fit)."""
        return self.stages_pool - sum(self.scaling.values())


def added_up(used: dict[str, int]) -> str:
    """`intake 10 + thumbnails 20 + labels 2`: concurrency by function, as the refusals and ops show a sum."""
    return " + ".join(f"{name} {n:,}" for name, n in used.items())


def problems(budget: ConcurrencyBudget) -> list[str]:
    """Configurations that cannot work, in the words of the settings' other errors (key = value, what is accepted)."""
    found = []
    if sum(budget.reserved.values()) > budget.reservable:
        keys = " + ".join(RESERVING[name] for name in budget.reserved)
        found.append(f"{keys} = {sum(budget.reserved.values()):,} is more than Lambda lets the account reserve "
                     f"(accepted: at most accountConcurrency {budget.quota:,} - the {budget.unreserved_minimum:,} Lambda "
                     f"keeps unreserved ({UNRESERVED_RULE}) = {budget.reservable:,}; set "
                     "uploadApiConcurrency 0 to reserve none: the upload function then shares the unreserved concurrency, "
                     "bounded by the HTTP API's throttle in JWT mode; or ask AWS to raise the Regional Lambda concurrency "
                     "quota and set accountConcurrency)")
    used = {**budget.scaling, **budget.reserved}
    room = budget.quota - budget.reserve
    if sum(used.values()) > room:
        found.append(f"maxConcurrency = {added_up(used)} = {sum(used.values()):,} is more than the account leaves the pipeline "
                     f"(accepted: at most accountConcurrency {budget.quota:,} - concurrencyReserve "
                     f"{budget.reserve:,} = {room:,}; ask AWS to raise the Regional Lambda concurrency quota and "
                     "set accountConcurrency, or lower them)")
    return found
