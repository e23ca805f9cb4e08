// Command gomaasapi-check drives vmyard with Juju's real MAAS client library
// (github.com/juju/gomaasapi, as packaged by Debian) the way Juju's MAAS
// provider does: connect, list boot resources, read zones and spaces, allocate a machine with an
// interface constraint on a space (vmyard composes a VM for it), set owner
// data, find it by agent name, release it, and check that it is gone.
//
// It prints three JSON lines on stdout: the allocation, then (after a line on
// stdin when -pause is given, so a test can look at the VM or link its interfaces)
// the machine's interface links as gomaasapi reads them, then the release.
// Any client-side error (a schema check, a bad id in constraints_by_type)
// ends it with a non-zero exit and the error on stderr.
//
// A 409 from allocate (gomaasapi's NoMatchError) prints {"no_match": ...} and exits 3.
//
// With -deploy SYSTEM_ID it instead deploys that machine as Juju's bootstrap does (deploy.go)
// and prints one JSON line: the statuses seen, the machine's addresses and links, the release.
//
// Usage:
//
//	gomaasapi-check -url http://127.0.0.1:PORT/MAAS/api/2.0/ -key KEY -space NAME [-agent UUID] [-cpus N] [-pause]
//	gomaasapi-check -url … -key KEY -deploy SYSTEM_ID -distro-series NAME [-cloud-config TEXT] [-poll 10s] [-timeout 1200s]
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/juju/gomaasapi"
)

type nic struct {
	ID   int    `json:"id"`
	Name string `json:"name"`
	MAC  string `json:"mac_address"`
	VLAN int    `json:"vid"`
}

type disk struct {
	ID   int    `json:"id"`
	Path string `json:"path"`
	Size uint64 `json:"size"`
}

type bootResource struct {
	ID           int    `json:"id"`
	Name         string `json:"name"`
	Type         string `json:"type"`
	Architecture string `json:"architecture"`
	SubArches    string `json:"subarches"`
}

type report struct {
	BootRes    []bootResource    `json:"boot_resources"`
	Arches     []string          `json:"architectures"`
	Zones      []string          `json:"zones"`
	Spaces     map[string]int    `json:"spaces"`
	SystemID   string            `json:"system_id"`
	Hostname   string            `json:"hostname"`
	Status     string            `json:"status_name"`
	CPUCount   int               `json:"cpu_count"`
	Memory     int               `json:"memory"`
	Zone       string            `json:"zone"`
	Interfaces []nic             `json:"interface_set"`
	BlockDevs  []disk            `json:"blockdevice_set"`
	Matches    map[string][]nic  `json:"interface_matches"`
	Storage    map[string][]disk `json:"storage_matches"`
	OwnerData  map[string]string `json:"owner_data"`
	ByAgent    []string          `json:"machines_by_agent"`
}

type linkReport struct {
	Interface string   `json:"interface"`
	ID        int      `json:"id"`
	Mode      string   `json:"mode"`
	IP        string   `json:"ip_address"`
	CIDR      string   `json:"cidr"`
	VID       int      `json:"vid"`
	Gateway   string   `json:"gateway_ip"`
	DNS       []string `json:"dns_servers"`
}

type released struct {
	SystemID   string `json:"released"`
	AfterCount int    `json:"machines_after_release"`
}

func fail(step string, err error) {
	fmt.Fprintf(os.Stderr, "%s: %v\n", step, err)
	os.Exit(1)
}

func toNic(i gomaasapi.Interface) nic {
	n := nic{ID: i.ID(), Name: i.Name(), MAC: i.MACAddress()}
	if v := i.VLAN(); v != nil {
		n.VLAN = v.VID()
	}
	return n
}

func main() {
	url := flag.String("url", "", "MAAS API URL")
	key := flag.String("key", "", "API key consumer:token:secret")
	spaceName := flag.String("space", "", "space for the interface constraint")
	agent := flag.String("agent", "3f1c6a2e-model", "agent name (Juju: the model UUID)")
	pause := flag.Bool("pause", false, "wait for a line on stdin before releasing")
	cpus := flag.Int("cpus", 1, "minimum CPU count to ask for")
	systemID := flag.String("deploy", "", "deploy this machine as Juju's bootstrap does (deploy.go) instead")
	series := flag.String("distro-series", "", "with -deploy: the image to deploy")
	cloudConfig := flag.String("cloud-config", "#cloud-config\n", "with -deploy: the user data, before gzip+base64")
	poll := flag.Duration("poll", 10*time.Second, "with -deploy: the pause between status reads (Juju: 10 s)")
	timeout := flag.Duration("timeout", 1200*time.Second, "with -deploy: how long to wait for Deployed (Juju: 1200 s)")
	flag.Parse()
	enc := json.NewEncoder(os.Stdout)

	ctrl, err := gomaasapi.NewController(gomaasapi.ControllerArgs{BaseURL: *url, APIKey: *key})
	if err != nil {
		fail("NewController", err)
	}
	if *systemID != "" {
		deployAsJuju(ctrl, *systemID, *agent, *series, *cloudConfig, *poll, *timeout)
		return
	}
	out := report{Spaces: map[string]int{}}
	// Juju's constraints validator (environ.go getSupportedArchitectures): the boot resources'
	// architectures up to the first "/", without duplicates.
	resources, err := ctrl.BootResources()
	if err != nil {
		fail("BootResources", err)
	}
	arches := map[string]bool{}
	for _, r := range resources {
		out.BootRes = append(out.BootRes, bootResource{r.ID(), r.Name(), r.Type(), r.Architecture(), strings.Join(r.SubArchitectures().SortedValues(), ",")})
		arch := strings.Split(r.Architecture(), "/")[0]
		if !arches[arch] {
			arches[arch] = true
			out.Arches = append(out.Arches, arch)
		}
	}
	zones, err := ctrl.Zones()
	if err != nil {
		fail("Zones", err)
	}
	for _, z := range zones {
		out.Zones = append(out.Zones, z.Name())
	}
	spaces, err := ctrl.Spaces()
	if err != nil {
		fail("Spaces", err)
	}
	spaceID := ""
	for _, s := range spaces {
		out.Spaces[s.Name()] = s.ID()
		if s.Name() == *spaceName {
			spaceID = fmt.Sprint(s.ID())
		}
	}
	if spaceID == "" {
		fail("Spaces", fmt.Errorf("no space named %q", *spaceName))
	}

	// As Juju's acquireNode: the label and the space are the space's provider id.
	machine, matches, err := ctrl.AllocateMachine(gomaasapi.AllocateMachineArgs{
		MinCPUCount: *cpus,
		MinMemory:   1024,
		Storage:     []gomaasapi.StorageSpec{{Label: "root", Size: 1}},
		Interfaces:  []gomaasapi.InterfaceSpec{{Label: spaceID, Space: spaceID}},
		AgentName:   *agent,
		Comment:     "gomaasapi-check",
	})
	if gomaasapi.IsNoMatchError(err) {
		// What Juju does next is try another zone; report it and stop.
		enc.Encode(map[string]string{"no_match": err.Error()})
		os.Exit(3)
	}
	if err != nil {
		fail("AllocateMachine", err)
	}
	out.SystemID, out.Hostname, out.Status = machine.SystemID(), machine.Hostname(), machine.StatusName()
	out.CPUCount, out.Memory, out.Zone = machine.CPUCount(), machine.Memory(), machine.Zone().Name()
	for _, i := range machine.InterfaceSet() {
		out.Interfaces = append(out.Interfaces, toNic(i))
	}
	for _, b := range machine.BlockDevices() {
		out.BlockDevs = append(out.BlockDevs, disk{b.ID(), b.Path(), b.Size()})
	}
	out.Matches = map[string][]nic{}
	for label, ifaces := range matches.Interfaces {
		for _, i := range ifaces {
			out.Matches[label] = append(out.Matches[label], toNic(i))
		}
	}
	out.Storage = map[string][]disk{}
	for label, devs := range matches.Storage {
		for _, d := range devs {
			out.Storage[label] = append(out.Storage[label], disk{d.ID(), d.Path(), d.Size()})
		}
	}

	if err := machine.SetOwnerData(map[string]string{"juju-machine-id": "0"}); err != nil {
		fail("SetOwnerData", err)
	}
	out.OwnerData = machine.OwnerData()
	byAgent, err := ctrl.Machines(gomaasapi.MachinesArgs{AgentName: *agent, SystemIDs: []string{machine.SystemID()}})
	if err != nil {
		fail("Machines(agent)", err)
	}
	for _, m := range byAgent {
		out.ByAgent = append(out.ByAgent, m.SystemID())
	}

	if err := enc.Encode(out); err != nil {
		fail("encode", err)
	}
	if *pause {
		bufio.NewReader(os.Stdin).ReadString('\n')
	}
	// What Juju's maasNetworkInterfaces reads: each interface's links, with whole subnets.
	again, err := ctrl.Machines(gomaasapi.MachinesArgs{SystemIDs: []string{machine.SystemID()}})
	if err != nil || len(again) != 1 {
		fail("Machines(links)", fmt.Errorf("%v (%d machines)", err, len(again)))
	}
	links := []linkReport{}
	for _, i := range again[0].InterfaceSet() {
		for _, l := range i.Links() {
			r := linkReport{Interface: i.Name(), ID: l.ID(), Mode: l.Mode(), IP: l.IPAddress()}
			if s := l.Subnet(); s != nil {
				r.CIDR, r.VID, r.Gateway, r.DNS = s.CIDR(), s.VLAN().VID(), s.Gateway(), append([]string{}, s.DNSServers()...)
			}
			links = append(links, r)
		}
	}
	if err := enc.Encode(map[string][]linkReport{"links": links}); err != nil {
		fail("encode", err)
	}

	if err := ctrl.ReleaseMachines(gomaasapi.ReleaseMachinesArgs{SystemIDs: []string{machine.SystemID()}, Comment: "done"}); err != nil {
		fail("ReleaseMachines", err)
	}
	after, err := ctrl.Machines(gomaasapi.MachinesArgs{SystemIDs: []string{machine.SystemID()}})
	if err != nil {
		fail("Machines(after)", err)
	}
	if err := enc.Encode(released{machine.SystemID(), len(after)}); err != nil {
		fail("encode", err)
	}
}
