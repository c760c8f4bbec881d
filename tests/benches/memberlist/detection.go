// Detection time of HashiCorp memberlist on loopback, the figure Shoal's
// `cargo bench -p shoal-tests --bench native -- detection` prints beside it.
//
// N members with memberlist's DefaultLANConfig (UDP + TCP on 127.0.0.1) form a cluster through the
// first one and wait until every member lists every other, then crash members one after another
// (Shutdown without Leave, the member started last first, never the seed). Each crash is timed until every remaining member has reported it gone (NotifyLeave),
// polled every 20 ms, with 2 s between crashes, as Shoal's bench does.
//
// Build and run from the Debian packages (no network):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go run tests/benches/memberlist/detection.go -n 50 -crashes 10
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// gone counts, per member, the names it reported gone.
type gone struct {
	mu    sync.Mutex
	names map[string]bool
}

func (g *gone) NotifyJoin(n *memberlist.Node) {
	g.mu.Lock()
	delete(g.names, n.Name)
	g.mu.Unlock()
}
func (g *gone) NotifyLeave(n *memberlist.Node) {
	g.mu.Lock()
	g.names[n.Name] = true
	g.mu.Unlock()
}
func (g *gone) NotifyUpdate(*memberlist.Node) {}
func (g *gone) has(name string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.names[name]
}

type member struct {
	list *memberlist.Memberlist
	seen *gone
}

func until(limit time.Duration, check func() bool) bool {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if check() {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return check()
}

func main() {
	n := flag.Int("n", 50, "members")
	crashes := flag.Int("crashes", 10, "members crashed one after another")
	basePort := flag.Int("port", 27946, "first member's port; the others follow")
	flag.Parse()

	var all []member
	for i := 0; i < *n; i++ {
		c := memberlist.DefaultLANConfig()
		c.Name = fmt.Sprintf("ml-%d", i)
		c.BindAddr = "127.0.0.1"
		c.AdvertiseAddr = "127.0.0.1"
		c.BindPort = *basePort + i
		c.AdvertisePort = c.BindPort
		c.LogOutput = io.Discard
		seen := &gone{names: map[string]bool{}}
		c.Events = seen
		list, err := memberlist.Create(c)
		if err != nil {
			log.Fatalf("member %d: %v", i, err)
		}
		if i > 0 {
			if _, err := list.Join([]string{fmt.Sprintf("127.0.0.1:%d", *basePort)}); err != nil {
				log.Fatalf("member %d joins: %v", i, err)
			}
		}
		all = append(all, member{list, seen})
	}
	formed := until(60*time.Second, func() bool {
		for _, m := range all {
			if m.list.NumMembers() != *n {
				return false
			}
		}
		return true
	})
	if !formed {
		log.Fatalf("the %d members did not all list each other in 60 s", *n)
	}

	var times []float64
	for c := 0; c < *crashes; c++ {
		victim := all[len(all)-1]
		all = all[:len(all)-1]
		name := victim.list.LocalNode().Name
		crashedAt := time.Now()
		victim.list.Shutdown()
		everywhere := until(90*time.Second, func() bool {
			for _, m := range all {
				if !m.seen.has(name) {
					return false
				}
			}
			return true
		})
		if everywhere {
			times = append(times, time.Since(crashedAt).Seconds())
		} else {
			fmt.Printf("memberlist detection: crash %d not reported gone everywhere in 90 s\n", c)
		}
		time.Sleep(2 * time.Second)
	}
	sort.Float64s(times)
	at := func(q float64) float64 {
		if len(times) == 0 {
			return 0
		}
		return times[int(float64(len(times)-1)*q+0.5)]
	}
	fmt.Printf("detection: %d members, HashiCorp memberlist (Go, DefaultLANConfig): %d crashes, failed everywhere %.2f s after the crash (median), p90 %.2f s, max %.2f s\n",
		*n, len(times), at(0.5), at(0.9), at(1.0))
	for _, m := range all {
		m.list.Shutdown()
	}
	os.Exit(0)
}
