package store_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"switchboard/store"
)

func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "store-example")
	defer os.RemoveAll(dir)

	s, err := store.Open(dir, store.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()

	s.AddDomain(ctx, "example.com")
	s.AddSubscriber(ctx, store.Subscriber{Username: "alice", Domain: "example.com", Password: "secret"})
	err = s.AddSubscriber(ctx, store.Subscriber{Username: "alice", Domain: "example.com", Password: "x"})
	fmt.Println(err)
	err = s.AddSubscriber(ctx, store.Subscriber{Username: "bob", Domain: "example.org", Password: "x"})
	fmt.Println(err)

	sub, _ := s.GetSubscriber(ctx, "alice", "example.com")
	fmt.Println(sub.HA1)

	w := s.NewLocationWriter(store.WriterOptions{})
	w.Upsert(store.Binding{AOR: "alice@example.com", Contact: "sip:alice@192.0.2.1:5060",
		Q: 1000, Expires: time.Now().Add(time.Hour).Unix()})
	w.Close()
	bs, _, _ := s.LoadBindings(ctx, time.Now())
	fmt.Println(len(bs), bs[0].Contact)

	changes, _, _ := s.Changes(ctx, 0)
	fmt.Println(len(changes), changes[1].Username)
	// Output:
	// subscriber alice@example.com already exists
	// domain "example.org" is not served (add it first)
	// b1726872c344b6dc8365b774f8fd6412
	// 1 sip:alice@192.0.2.1:5060
	// 2 alice
}
