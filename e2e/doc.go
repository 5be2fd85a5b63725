// Package e2e holds Herald's end-to-end tests: they build the real herald
// binary, start it on 127.0.0.1 with real receivers, and check what arrives.
package e2e
