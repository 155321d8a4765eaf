//! The keepalive policy engine: the seed's protection layers as a pure decision function plus a short runtime that executes it for many sessions.
