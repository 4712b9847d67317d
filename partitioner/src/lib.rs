//! wangge partitioner: each community into contiguous, balanced, compact
//! service grids; planner edits with versions; quality metrics.
//!
//! * [`units`] — the territory of every building (a Voronoi diagram of
//!   footprint samples), from which any grouping of buildings gets grid
//!   outlines that tile the community and never cut a footprint.
//! * [`balance`] — grouping a community's buildings into grids of about the
//!   target households: recursive weighted bisection, contiguity repair and
//!   balancing moves on the building adjacency graph.
//! * [`city`] — communities and buildings read from a store, partitioned
//!   in parallel.
//! * [`noding`] — new grids noded with the admin layers so every level
//!   keeps tiling its parent exactly.
//! * [`versions`] — writing grids back with a version per community.
//! * [`quality`] — the quality report of a stored partition.
//! * [`edit`] — planner edits (move, split, merge, lock, unlock,
//!   rebalance), validated and written as a new version.

pub mod balance;
pub mod city;
pub mod edit;
pub mod noding;
pub mod quality;
pub mod units;
pub mod versions;
