package main

// Juju's bootstrap through gomaasapi (environ.go StartInstance and waitForNodeDeployment):
// allocate the machine named by placement (system-id=), Start it with gzip+base64 user data
// (userdata.go MAASRenderer), set owner data, poll Machines by id and agent name until Deployed
// ("Failed deployment" is fatal), read its addresses from the interface links as
// maasNetworkInterfaces does, then release it.

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/juju/gomaasapi"
)

type subnetSeen struct {
	ID      int      `json:"id"`
	CIDR    string   `json:"cidr"`
	Space   string   `json:"space"`
	VID     int      `json:"vid"`
	MTU     int      `json:"mtu"`
	Gateway string   `json:"gateway_ip"`
	DNS     []string `json:"dns_servers"`
}

type linkSeen struct {
	Interface string      `json:"interface"`
	Mode      string      `json:"mode"`
	IP        string      `json:"ip_address"`
	Subnet    *subnetSeen `json:"subnet"`
}

type deployed struct {
	SystemID  string            `json:"system_id"`
	Started   string            `json:"status_after_start"`
	Statuses  []string          `json:"statuses_polled"`
	Status    string            `json:"status_name"`
	OS        string            `json:"osystem"`
	Series    string            `json:"distro_series"`
	IPs       []string          `json:"ip_addresses"`
	Links     []linkSeen        `json:"links"`
	OwnerData map[string]string `json:"owner_data"`
	Released  bool              `json:"released"`
}

func jujuUserData(cloudConfig string) string {
	var packed bytes.Buffer
	w := gzip.NewWriter(&packed)
	w.Write([]byte(cloudConfig))
	w.Close()
	return base64.StdEncoding.EncodeToString(packed.Bytes())
}

func deployAsJuju(ctrl gomaasapi.Controller, systemID, agent, series, cloudConfig string, poll, timeout time.Duration) {
	machine, _, err := ctrl.AllocateMachine(gomaasapi.AllocateMachineArgs{SystemId: systemID, AgentName: agent})
	if err != nil {
		fail("AllocateMachine", err)
	}
	out := deployed{SystemID: machine.SystemID()}
	if err := machine.Start(gomaasapi.StartArgs{DistroSeries: series, UserData: jujuUserData(cloudConfig)}); err != nil {
		fail("Start", err)
	}
	out.Started = machine.StatusName()
	if err := machine.SetOwnerData(map[string]string{"juju-machine-id": "0", "juju-is-controller": "true"}); err != nil {
		fail("SetOwnerData", err)
	}
	deadline := time.Now().Add(timeout)
	for {
		found, err := ctrl.Machines(gomaasapi.MachinesArgs{SystemIDs: []string{systemID}, AgentName: agent})
		if err != nil {
			fail("Machines", err)
		}
		if len(found) != 1 {
			fail("Machines", fmt.Errorf("%d machines for %s", len(found), systemID))
		}
		machine = found[0]
		out.Statuses = append(out.Statuses, machine.StatusName())
		if machine.StatusName() == "Deployed" {
			break
		}
		if machine.StatusName() == "Failed deployment" {
			fail("waitForNodeDeployment", fmt.Errorf("instance %s failed to deploy: %s", systemID, machine.StatusMessage()))
		}
		if time.Now().After(deadline) {
			fail("waitForNodeDeployment", fmt.Errorf("instance %s is started but not deployed", systemID))
		}
		time.Sleep(poll)
	}
	out.Status, out.OS, out.Series = machine.StatusName(), machine.OperatingSystem(), machine.DistroSeries()
	out.IPs, out.OwnerData = machine.IPAddresses(), machine.OwnerData()
	for _, iface := range machine.InterfaceSet() {
		for _, link := range iface.Links() {
			seen := linkSeen{Interface: iface.Name(), Mode: link.Mode(), IP: link.IPAddress()}
			if s := link.Subnet(); s != nil {
				seen.Subnet = &subnetSeen{s.ID(), s.CIDR(), s.Space(), s.VLAN().VID(), s.VLAN().MTU(), s.Gateway(), s.DNSServers()}
			}
			out.Links = append(out.Links, seen)
		}
	}
	if err := ctrl.ReleaseMachines(gomaasapi.ReleaseMachinesArgs{SystemIDs: []string{systemID}, Comment: "Released by Juju MAAS provider"}); err != nil {
		fail("ReleaseMachines", err)
	}
	out.Released = true
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fail("encode", err)
	}
}
