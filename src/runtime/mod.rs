//! Per-process runtime: what this worker is attached to, and what it does
//! with it. Safe code over `zone` (pure) and `ngx` (edges); the Lua layer
//! calls down into it and nothing here knows about Lua APIs.
//!
//! - `cell`: the one kind of per-process global (borrow guard, fork reset);
//! - `state`: this process' attachments (zone + slot) and consumers;
//! - `notify`: push wake-ups between and within workers;
//! - `resolve`: which zone a name stands for (the default-zone rule);
//! - `attach`: attaching this process to zones (attachment, worker slot);
//! - `consumer`: consumers: open, read, pending, stats, close;
//! - `post`: posting records (local, unique, cluster);
//! - `report`: a zone's status document (endpoint and `stats()`);
//! - `lifecycle`: worker start and exit, from nginx's process hooks,
//!   whether or not any Lua API is used;
//! - `manager`: lifecycle tracking for `resty.worker.manager` (counts per
//!   generation, heartbeats, crashed / hung workers);
//! - `tasks`: `ngx_tasks` windows and run locks in the claims table;
//! - `claim`: unique claims of consumers; `counters`: the status counters.
//!
//! A **consumer** is one reader of one zone in one worker: one Lua API
//! instance (`resty.worker.events`, `resty.events`), with its own
//! cursor, lost-event count and wake-up semaphore.

pub mod attach;
pub mod cell;
pub mod claim;
pub mod cluster;
pub mod consumer;
pub mod counters;
pub mod lifecycle;
pub mod manager;
pub mod notify;
pub mod post;
pub mod report;
pub mod resolve;
pub mod state;
pub mod tasks;
