//! Integration tests against real Redis and a real Mongo-wire server.
#![allow(unreachable_pub)] // a test binary exports nothing

mod helpers;
mod storm;
mod support;

mod abuse;
mod access;
mod auth;
mod bad_input;
mod clock;
mod cluster;
mod console;
mod faults;
mod fraud;
mod health;
mod orders;
mod products;
mod purchase;
mod realtime;
mod replication;
mod sales;
mod write_behind;
mod ws_abuse;
