// Command streamclient is a small grpc-go client for stream.v1.StreamService:
// it checks the server's health, then prints greetings until -limit is reached.
//
// Run it with examples/go/run.sh, which generates the stubs from proto/ with
// protoc-gen-go and protoc-gen-go-grpc and builds in GOPATH mode against
// Debian's golang-google-grpc-dev (no module download needed).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/durationpb"

	streamv1 "streamexample/streamv1"
)

func main() {
	target := flag.String("target", "127.0.0.1:8080", "host:port of the server")
	name := flag.String("name", "Gopher", "who to greet")
	limit := flag.Uint64("limit", 5, "messages to receive; 0 means until interrupted")
	startAt := flag.Uint64("start-at", 0, "counter of the first message")
	interval := flag.Duration("interval", time.Second, "pause between messages")
	timeout := flag.Duration("timeout", 0, "deadline for the whole stream; 0 means none")
	flag.Parse()
	log.SetFlags(0)

	// WithInsecure: Debian's grpc-go 1.33 predates credentials/insecure; plaintext h2c either way.
	conn, err := grpc.Dial(*target, grpc.WithInsecure())
	if err != nil {
		log.Fatalf("dial %s: %v", *target, err)
	}
	defer conn.Close()

	ctx := context.Background()
	checkCtx, cancelCheck := context.WithTimeout(ctx, 5*time.Second)
	health, err := healthpb.NewHealthClient(conn).Check(checkCtx, &healthpb.HealthCheckRequest{Service: "stream.v1.StreamService"})
	cancelCheck()
	if err != nil {
		log.Fatalf("health check: %v", err)
	}
	fmt.Fprintf(os.Stderr, "health: %s\n", health.GetStatus())

	if *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	stream, err := streamv1.NewStreamServiceClient(conn).Stream(ctx, &streamv1.StreamRequest{
		Name:     *name,
		Limit:    *limit,
		StartAt:  *startAt,
		Interval: durationpb.New(*interval),
	})
	if err != nil {
		log.Fatalf("stream: %v", err)
	}
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			return
		}
		if err != nil {
			log.Fatalf("stream: %v", err)
		}
		fmt.Printf("%d: %s\n", m.GetCounter(), m.GetMessage())
	}
}
