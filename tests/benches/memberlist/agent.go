// One HashiCorp memberlist member as a process, with the command line `tests/benches/wire-packets.sh`
// gives shoal-agent, so that the script counts memberlist's packets on the wire exactly as it
// counts Shoal's:
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o target/memberlist-agent tests/benches/memberlist/agent.go
//	bash tests/benches/wire-packets.sh 50 120 60 target/memberlist-agent
//
// DefaultLANConfig; runs until killed.
package main

import (
	"flag"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/hashicorp/memberlist"
)

func main() {
	name := flag.String("name", "", "member name")
	bind := flag.String("bind", "127.0.0.1:7946", "address to bind (UDP and TCP)")
	join := flag.String("join", "", "a member to join through")
	flag.Parse()
	host, port, err := net.SplitHostPort(*bind)
	if err != nil {
		log.Fatalf("--bind %q: %v", *bind, err)
	}
	c := memberlist.DefaultLANConfig()
	c.Name = *name
	c.BindAddr, c.AdvertiseAddr = host, host
	c.BindPort, _ = strconv.Atoi(port)
	c.AdvertisePort = c.BindPort
	c.LogOutput = io.Discard
	list, err := memberlist.Create(c)
	if err != nil {
		log.Fatal(err)
	}
	if *join != "" {
		if _, err := list.Join([]string{*join}); err != nil {
			log.Fatal(err)
		}
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
	list.Shutdown()
}
