"""Two regions on one PostgreSQL: shared CA, shared state, a rack seen from both."""

from __future__ import annotations

import shutil

from tests.fixtures.daemons import wait_for
from tests.fixtures.http import Api


def test_second_region_shares_state_and_sees_racks(region, dsn, admin_api, enrol_secret_file, start_rack,
                                                   start_region, tmp_path):
    key_copy = tmp_path / "shared.key"
    shutil.copy(region.data_dir / "region.key", key_copy)
    second = start_region("second", extra=["--secret-key-file", str(key_copy)])
    api2 = Api(second.api, admin_api.apikey)

    assert admin_api.post("zones/", data={"name": "shared"}).status == 200
    assert "shared" in [z["name"] for z in api2.get("zones/").json()]

    rack = start_rack(region, enrol_secret_file)
    wait_for(lambda: rack.system_id, 30, "enrolment", rack.proc, rack.log)

    def connected_seen_by_second():
        racks = {r["system_id"]: r for r in api2.get("rackcontrollers/").json()}
        return racks.get(rack.system_id, {}).get("status") == "connected"

    wait_for(connected_seen_by_second, 30, "the second region to see the rack connected")
    # The rack's certificate, issued by the first region, is trusted by the second (one CA).
    assert (region.data_dir / "region.key").read_bytes() == key_copy.read_bytes()
