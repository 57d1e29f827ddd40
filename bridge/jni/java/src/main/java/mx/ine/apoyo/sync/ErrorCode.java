// The result codes of the apoyo-sync library, one per code of ApoyoCode in include/apoyo_sync.h
// (same names without the APOYO_CODE_ prefix, same numbers). scripts/check-error-codes.sh parses
// this file: keep one `NAME(N),` entry per line.
package mx.ine.apoyo.sync;

/** A result code of the library; {@link SyncException#code()} says which one a failure has. */
public enum ErrorCode {
    OK(0),
    INVALID(1),
    MODEL_NOT_ACCEPTED(2),
    CREDENTIAL_EXPIRED(3),
    OUT_OF_SCOPE(4),
    UNKNOWN_PROCESS(5),
    PROCESS_CLOSED(6),
    INVALID_PROCESS(7),
    DUPLICATE(8),
    STORAGE_FULL(9),
    UNKNOWN_CAPTURE(10),
    CAPTURE_GONE(11),
    KEY_UNAVAILABLE(20),
    WRONG_DEVICE(21),
    INTEGRITY(22),
    CIPHERTEXT_VERSION(23),
    NO_STORE(30),
    STORE_EXISTS(31),
    STORE_BUSY(32),
    CORRUPT_STORE(33),
    STORE_VERSION(34),
    KEYRING_INSIDE_STORE(35),
    DECODE(40),
    TOO_LARGE(41),
    NOT_REGISTERED(42),
    NOT_ACTIVATED(43),
    ACTIVATION(44),
    TRANSIENT(45),
    REJECTED(46),
    BAD_RECEIPT(47),
    ENGINE_CLOSED(48),
    SYNC_RUNNING(49),
    SQLITE(90),
    IO(91),
    CRYPTO(92),
    INTERNAL(99),
    NULL_POINTER(100),
    INVALID_HANDLE(101),
    PANIC(102),
    INVALID_ARGUMENT(103),
    ;

    private final int value;

    ErrorCode(int value) {
        this.value = value;
    }

    /** The number the library uses (include/apoyo_sync.h). */
    public int value() {
        return value;
    }

    /** The code of a number; {@code null} for a number that is no code. */
    public static ErrorCode of(int value) {
        for (ErrorCode c : values()) {
            if (c.value == value) {
                return c;
            }
        }
        return null;
    }
}
