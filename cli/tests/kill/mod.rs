//! The SIGKILL loops of real processes (issue 14): a device process killed mid-upload,
//! mid-commit and between receipt and purge; an endpoint process killed mid-request. The
//! processes live in `world`, the read-only views of their databases in `view`, the promises
//! checked in `check`, and the two loops in `device_loop` and `endpoint_loop`.

pub mod check;
pub mod device_loop;
pub mod endpoint_loop;
pub mod view;
pub mod world;
