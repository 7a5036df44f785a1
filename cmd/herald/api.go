package main

import "context"

func init() {
	register(command{name: "api",
		summary: "serve the HTTP API alone: a view of the dispatcher table and a producer, no processors (scale it apart with --brokers)",
		run: func(ctx context.Context, args []string) error {
			return runPipeline(ctx, "api", args, "api")
		}})
}
