// Package tunnel is edgeunit's reverse tunnel: a tunnel-agent on each edge
// node dials out to every tunnel-server replica so the cloud can reach the
// node's kubelet (and other allow-listed local ports) although the node sits
// behind NAT.
//
// # Wire protocol
//
// The agent dials the server's agent port over TLS 1.3 with a client
// certificate whose identity is its node name (see certs.TunnelAgentNode).
// Before anything else it sends a hello frame naming the node; the server
// refuses the connection unless that name is the one the certificate carries.
// Both sides then run a multiplexed session over the TLS connection (the
// project's own multiplexer, package mux): every connection the cloud wants
// on the node is one stream with its own flow-control window, so a slow
// reader stalls only its stream, and control frames never wait behind
// data.
//
// The server opens a stream per connection and writes a request frame with
// the target (host:port); the agent checks the target against its policy
// (its own addresses, allow-listed ports), dials it and answers with a reply
// frame; after a successful reply the stream carries raw bytes. The agent
// opens streams the other way only to report how many server replicas it is
// connected to. Frames are a 2-byte big-endian length and a JSON document.
//
// # Frontends
//
// The server offers the tunnel through an HTTP CONNECT listener (what
// kube-apiserver's egress selector speaks, over TLS with client certificates
// or a Unix socket) and through a TLS passthrough listener that routes by SNI
// (node name) without terminating TLS, for scrapers such as metrics-server.
// Targets are resolved to nodes through Node objects.
//
// # Status
//
// Each replica reports into TunnelEndpoint status in batches (see Reporter):
// it merges its own view into what other replicas wrote, with optimistic
// concurrency, so replicas never clobber each other.
package tunnel
