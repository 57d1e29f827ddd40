//! The VFS shim: SQLite's own unix VFS underneath, with every write, truncation, sync and
//! deletion of a file under a tracked folder reported to its [`Disk`] first (which may refuse
//! it once the power is lost). Registered as the process's default VFS, so the store and the
//! endpoint open their databases through it without a change to how they open them. Reads,
//! locks and the WAL index (`-shm`, memory that a power loss resets anyway) go straight to the
//! unix VFS. The only `unsafe` code of the workspace outside the bridge crates (ADR 0017).

use std::ffi::{CStr, OsStr, c_char, c_int, c_void};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::ptr;
use std::sync::{Arc, Mutex, Once};

use rusqlite::ffi;

use crate::disk::Disk;

/// The folders being tracked, each with its disk.
static DISKS: Mutex<Vec<Arc<Disk>>> = Mutex::new(Vec::new());

fn find(path: &Path) -> Option<Arc<Disk>> {
    DISKS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .find(|d| d.covers(path))
        .cloned()
}

/// Keeps a disk tracked; untracks it when dropped.
#[must_use = "the disk is untracked when this is dropped"]
pub struct Tracked(Arc<Disk>);

impl Drop for Tracked {
    fn drop(&mut self) {
        DISKS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|d| !Arc::ptr_eq(d, &self.0));
    }
}

/// Routes SQLite's files under `disk`'s folder through it (files opened from now on).
pub fn track(disk: Arc<Disk>) -> Tracked {
    register();
    DISKS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(disk.clone());
    Tracked(disk)
}

/// One open file: SQLite allocates `szOsFile` bytes for it and we fill them in `x_open`.
#[repr(C)]
struct ShimFile {
    base: ffi::sqlite3_file,
    /// The unix VFS's file, in memory from `sqlite3_malloc`.
    real: *mut ffi::sqlite3_file,
    /// Owned (a `Box`), freed in `x_close`.
    extra: *mut Extra,
}

struct Extra {
    path: PathBuf,
    disk: Option<Arc<Disk>>,
}

/// Registers the shim as the default VFS, once.
pub fn register() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| unsafe {
        let root = ffi::sqlite3_vfs_find(ptr::null());
        assert!(!root.is_null(), "SQLite has no default VFS");
        // The unix VFS's other methods ignore their VFS argument, so they are used as they are.
        let mut vfs: ffi::sqlite3_vfs = *root;
        vfs.szOsFile = std::mem::size_of::<ShimFile>() as c_int;
        vfs.pNext = ptr::null_mut();
        vfs.zName = c"powerloss".as_ptr();
        vfs.pAppData = root.cast::<c_void>();
        vfs.xOpen = Some(x_open);
        vfs.xDelete = Some(x_delete);
        let rc = ffi::sqlite3_vfs_register(Box::into_raw(Box::new(vfs)), 1);
        assert_eq!(rc, ffi::SQLITE_OK, "registering the powerloss VFS");
    });
}

fn path_of(name: *const c_char) -> Option<PathBuf> {
    if name.is_null() {
        return None;
    }
    // SAFETY: SQLite passes a NUL-terminated file name that outlives the call.
    let bytes = unsafe { CStr::from_ptr(name) }.to_bytes();
    Some(PathBuf::from(OsStr::from_bytes(bytes)))
}

unsafe extern "C" fn x_open(
    vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    unsafe {
        let shim = file.cast::<ShimFile>();
        (*shim).base.pMethods = ptr::null();
        let root = (*vfs).pAppData.cast::<ffi::sqlite3_vfs>();
        let path = path_of(name);
        let disk = path.as_deref().and_then(find);
        if let (Some(d), Some(p)) = (&disk, &path)
            && d.open(p, flags & ffi::SQLITE_OPEN_CREATE != 0).is_err()
        {
            return ffi::SQLITE_CANTOPEN;
        }
        let size = (*root).szOsFile as usize;
        let real = ffi::sqlite3_malloc64(size as u64).cast::<ffi::sqlite3_file>();
        if real.is_null() {
            return ffi::SQLITE_NOMEM;
        }
        ptr::write_bytes(real.cast::<u8>(), 0, size);
        let Some(open) = (*root).xOpen else {
            ffi::sqlite3_free(real.cast());
            return ffi::SQLITE_CANTOPEN;
        };
        let rc = open(root, name, real, flags, out_flags);
        if rc != ffi::SQLITE_OK {
            ffi::sqlite3_free(real.cast());
            return rc;
        }
        let extra = Box::new(Extra {
            path: path.unwrap_or_default(),
            disk,
        });
        (*shim).real = real;
        (*shim).extra = Box::into_raw(extra);
        (*shim).base.pMethods = &IO_METHODS;
        ffi::SQLITE_OK
    }
}

unsafe extern "C" fn x_delete(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    sync_dir: c_int,
) -> c_int {
    unsafe {
        let root = (*vfs).pAppData.cast::<ffi::sqlite3_vfs>();
        if let Some(path) = path_of(name)
            && let Some(d) = find(&path)
        {
            let dir = path.parent().unwrap_or(Path::new("/"));
            let noted = d.remove(&path).and_then(|()| {
                if sync_dir != 0 {
                    d.sync_dir(dir)
                } else {
                    Ok(())
                }
            });
            if noted.is_err() {
                return ffi::SQLITE_IOERR_DELETE;
            }
        }
        match (*root).xDelete {
            Some(delete) => delete(root, name, sync_dir),
            None => ffi::SQLITE_IOERR_DELETE,
        }
    }
}

/// The shim's parts of an open file.
unsafe fn parts<'a>(file: *mut ffi::sqlite3_file) -> (*mut ffi::sqlite3_file, &'a Extra) {
    unsafe {
        let shim = file.cast::<ShimFile>();
        ((*shim).real, &*(*shim).extra)
    }
}

/// Calls method `$m` of the real file with the remaining arguments.
macro_rules! forward {
    ($file:expr, $m:ident $(, $arg:expr)*) => {{
        let (real, _) = parts($file);
        match (*(*real).pMethods).$m {
            Some(m) => m(real $(, $arg)*),
            None => ffi::SQLITE_IOERR,
        }
    }};
}

/// The file's disk, if it is under a tracked folder.
fn tracked(extra: &Extra) -> Option<(&Disk, &Path)> {
    extra.disk.as_deref().map(|d| (d, extra.path.as_path()))
}

unsafe extern "C" fn x_close(file: *mut ffi::sqlite3_file) -> c_int {
    unsafe {
        let shim = file.cast::<ShimFile>();
        let rc = forward!(file, xClose);
        ffi::sqlite3_free((*shim).real.cast());
        drop(Box::from_raw((*shim).extra));
        (*shim).real = ptr::null_mut();
        (*shim).extra = ptr::null_mut();
        (*shim).base.pMethods = ptr::null();
        rc
    }
}

unsafe extern "C" fn x_read(
    file: *mut ffi::sqlite3_file,
    buf: *mut c_void,
    amt: c_int,
    off: ffi::sqlite3_int64,
) -> c_int {
    unsafe { forward!(file, xRead, buf, amt, off) }
}

unsafe extern "C" fn x_write(
    file: *mut ffi::sqlite3_file,
    buf: *const c_void,
    amt: c_int,
    off: ffi::sqlite3_int64,
) -> c_int {
    unsafe {
        let (_, extra) = parts(file);
        if let Some((disk, path)) = tracked(extra) {
            let data = std::slice::from_raw_parts(buf.cast::<u8>(), amt as usize);
            if disk.write(path, off as u64, data).is_err() {
                return ffi::SQLITE_IOERR_WRITE;
            }
        }
        forward!(file, xWrite, buf, amt, off)
    }
}

unsafe extern "C" fn x_truncate(file: *mut ffi::sqlite3_file, size: ffi::sqlite3_int64) -> c_int {
    unsafe {
        let (_, extra) = parts(file);
        if let Some((disk, path)) = tracked(extra)
            && disk.truncate(path, size as u64).is_err()
        {
            return ffi::SQLITE_IOERR_TRUNCATE;
        }
        forward!(file, xTruncate, size)
    }
}

unsafe extern "C" fn x_sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    unsafe {
        let (_, extra) = parts(file);
        // The unix VFS syncs the folder of a new journal or WAL with its first sync; the
        // entry of the database file itself is taken as durable once it is synced. A tracked
        // file's sync is the disk's to model: the real flush is skipped (it would only cost).
        match tracked(extra) {
            Some((disk, path)) => match disk.sync_file(path, true) {
                Ok(()) => ffi::SQLITE_OK,
                Err(_) => ffi::SQLITE_IOERR_FSYNC,
            },
            None => forward!(file, xSync, flags),
        }
    }
}

unsafe extern "C" fn x_file_size(
    file: *mut ffi::sqlite3_file,
    size: *mut ffi::sqlite3_int64,
) -> c_int {
    unsafe { forward!(file, xFileSize, size) }
}

unsafe extern "C" fn x_lock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    unsafe { forward!(file, xLock, level) }
}

unsafe extern "C" fn x_unlock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    unsafe { forward!(file, xUnlock, level) }
}

unsafe extern "C" fn x_check_reserved_lock(file: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    unsafe { forward!(file, xCheckReservedLock, out) }
}

unsafe extern "C" fn x_file_control(
    file: *mut ffi::sqlite3_file,
    op: c_int,
    arg: *mut c_void,
) -> c_int {
    unsafe { forward!(file, xFileControl, op, arg) }
}

unsafe extern "C" fn x_sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    unsafe {
        let (real, _) = parts(file);
        match (*(*real).pMethods).xSectorSize {
            Some(m) => m(real),
            None => crate::disk::SECTOR as c_int,
        }
    }
}

unsafe extern "C" fn x_device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    unsafe {
        let (real, _) = parts(file);
        match (*(*real).pMethods).xDeviceCharacteristics {
            Some(m) => m(real),
            None => 0,
        }
    }
}

unsafe extern "C" fn x_shm_map(
    file: *mut ffi::sqlite3_file,
    page: c_int,
    size: c_int,
    extend: c_int,
    out: *mut *mut c_void,
) -> c_int {
    unsafe { forward!(file, xShmMap, page, size, extend, out) }
}

unsafe extern "C" fn x_shm_lock(
    file: *mut ffi::sqlite3_file,
    offset: c_int,
    n: c_int,
    flags: c_int,
) -> c_int {
    unsafe { forward!(file, xShmLock, offset, n, flags) }
}

unsafe extern "C" fn x_shm_barrier(file: *mut ffi::sqlite3_file) {
    unsafe {
        let (real, _) = parts(file);
        if let Some(m) = (*(*real).pMethods).xShmBarrier {
            m(real);
        }
    }
}

unsafe extern "C" fn x_shm_unmap(file: *mut ffi::sqlite3_file, delete: c_int) -> c_int {
    unsafe { forward!(file, xShmUnmap, delete) }
}

/// Version 2: the WAL index is supported; memory-mapped I/O (version 3) is not offered, so
/// every database write goes through `x_write`.
static IO_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 2,
    xClose: Some(x_close),
    xRead: Some(x_read),
    xWrite: Some(x_write),
    xTruncate: Some(x_truncate),
    xSync: Some(x_sync),
    xFileSize: Some(x_file_size),
    xLock: Some(x_lock),
    xUnlock: Some(x_unlock),
    xCheckReservedLock: Some(x_check_reserved_lock),
    xFileControl: Some(x_file_control),
    xSectorSize: Some(x_sector_size),
    xDeviceCharacteristics: Some(x_device_characteristics),
    xShmMap: Some(x_shm_map),
    xShmLock: Some(x_shm_lock),
    xShmBarrier: Some(x_shm_barrier),
    xShmUnmap: Some(x_shm_unmap),
    xFetch: None,
    xUnfetch: None,
};
