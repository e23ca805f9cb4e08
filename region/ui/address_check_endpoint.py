"""address-check?type=virsh&power_address=…: GET whether a VM host address passes the rules
vm-hosts/ applies (region/vmhost_address.py), so the add form can say what is wrong as the user
types.  200 {} when it does, 400 {"power_address": [why]} when not; nothing is contacted."""

from __future__ import annotations

from twisted.web import server

from region.services.errors import InvalidInput, NotAuthenticated
from region.ui.auth import session_user
from region.ui.responses import serve, write_json
from region.vmhost_address import ADDRESS_PROBLEMS

MAX_ADDRESS = 255  # as vm-hosts/ takes it


def address_problem(host_type: str, address: str) -> dict[str, list[str]]:
    """The field errors vm-hosts/ would give for this type and address ({}: none)."""
    if host_type not in ADDRESS_PROBLEMS:
        return {"type": [f"Select one of {', '.join(ADDRESS_PROBLEMS)}."]}
    address = address.strip()
    if not address:
        return {"power_address": ["This field is required."]}
    if len(address) > MAX_ADDRESS:
        return {"power_address": [f"Ensure this value has at most {MAX_ADDRESS} characters."]}
    problem = ADDRESS_PROBLEMS[host_type](address)
    return {"power_address": [problem]} if problem else {}


def _arg(request: server.Request, name: str) -> str:
    return (request.args.get(name.encode()) or [b""])[0].decode("utf-8", errors="replace")


class AddressCheckEndpoint:
    def __init__(self, region) -> None:
        self.region = region

    def render(self, request: server.Request):
        return serve(request, {b"GET": self._check})

    async def _check(self, request: server.Request) -> None:
        if await session_user(self.region, request) is None:
            raise NotAuthenticated("Not logged in.")
        problems = address_problem(_arg(request, "type"), _arg(request, "power_address"))
        if problems:
            raise InvalidInput(problems)
        write_json(request, 200, {})
