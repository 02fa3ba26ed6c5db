//! Test support for the Raft core: a scenario interpreter.
