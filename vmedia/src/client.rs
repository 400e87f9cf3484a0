//! gRPC client plumbing shared by the coordinator-facing subcommands (placeholder).
