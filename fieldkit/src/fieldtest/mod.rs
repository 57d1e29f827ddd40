//! A whole field scenario on one machine (in progress).
