// Every code of include/apoyo_sync.h (ErrorCode) comes back from the native side as its typed
// exception with the same code; the panic path is caught and typed; the library still works.
package mx.ine.apoyo.sync;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNotNull;
import static org.junit.Assert.assertSame;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.util.HashMap;
import java.util.HashSet;
import java.util.Map;
import java.util.Set;
import org.junit.Test;

public class ErrorMappingTest {
    /** The class of error each code belongs to: written out, not derived from create(). */
    private static final Map<ErrorCode, Class<? extends SyncException>> EXPECTED = new HashMap<>();

    static {
        for (ErrorCode c : new ErrorCode[] {ErrorCode.INVALID, ErrorCode.MODEL_NOT_ACCEPTED,
            ErrorCode.CREDENTIAL_EXPIRED, ErrorCode.OUT_OF_SCOPE, ErrorCode.UNKNOWN_PROCESS,
            ErrorCode.PROCESS_CLOSED, ErrorCode.INVALID_PROCESS, ErrorCode.DUPLICATE,
            ErrorCode.UNKNOWN_CAPTURE, ErrorCode.CAPTURE_GONE, ErrorCode.DECODE,
            ErrorCode.TOO_LARGE}) {
            EXPECTED.put(c, InvalidInputException.class);
        }
        EXPECTED.put(ErrorCode.STORAGE_FULL, StorageFullException.class);
        for (ErrorCode c : new ErrorCode[] {ErrorCode.KEY_UNAVAILABLE, ErrorCode.WRONG_DEVICE,
            ErrorCode.INTEGRITY, ErrorCode.CIPHERTEXT_VERSION}) {
            EXPECTED.put(c, KeyException.class);
        }
        for (ErrorCode c : new ErrorCode[] {ErrorCode.NO_STORE, ErrorCode.STORE_EXISTS,
            ErrorCode.STORE_BUSY, ErrorCode.CORRUPT_STORE, ErrorCode.STORE_VERSION,
            ErrorCode.KEYRING_INSIDE_STORE}) {
            EXPECTED.put(c, StoreException.class);
        }
        for (ErrorCode c : new ErrorCode[] {ErrorCode.NOT_REGISTERED, ErrorCode.NOT_ACTIVATED,
            ErrorCode.ACTIVATION}) {
            EXPECTED.put(c, ActivationException.class);
        }
        for (ErrorCode c : new ErrorCode[] {ErrorCode.TRANSIENT, ErrorCode.REJECTED,
            ErrorCode.BAD_RECEIPT}) {
            EXPECTED.put(c, EndpointException.class);
        }
        EXPECTED.put(ErrorCode.ENGINE_CLOSED, EngineClosedException.class);
        EXPECTED.put(ErrorCode.SYNC_RUNNING, SyncRunningException.class);
        for (ErrorCode c : new ErrorCode[] {ErrorCode.SQLITE, ErrorCode.IO, ErrorCode.CRYPTO,
            ErrorCode.INTERNAL, ErrorCode.PANIC}) {
            EXPECTED.put(c, InternalException.class);
        }
        for (ErrorCode c : new ErrorCode[] {ErrorCode.NULL_POINTER, ErrorCode.INVALID_HANDLE,
            ErrorCode.INVALID_ARGUMENT}) {
            EXPECTED.put(c, InvalidArgumentException.class);
        }
    }

    @Test
    public void everyCodeComesBackAsItsTypedException() {
        Set<Integer> seen = new HashSet<>();
        int checked = 0;
        for (ErrorCode code : ErrorCode.values()) {
            assertTrue("number used twice: " + code, seen.add(code.value()));
            assertSame(code, ErrorCode.of(code.value()));
            if (code == ErrorCode.OK) {
                continue;
            }
            Class<? extends SyncException> expected = EXPECTED.get(code);
            assertNotNull("no expected class written for " + code, expected);
            try {
                NativeTesting.fail(code.value());
                fail("no exception for " + code);
            } catch (SyncException e) {
                assertEquals(code.name(), expected, e.getClass());
                assertSame(code, e.code());
                assertTrue(e.getMessage(), e.getMessage().startsWith(code.name() + ": testing"));
            }
            checked++;
        }
        assertEquals(ErrorCode.values().length - 1, checked);
        assertEquals(EXPECTED.size(), checked);
    }

    @Test
    public void okThrowsNothingAndAnUnknownNumberIsAnInvalidArgument() throws SyncException {
        NativeTesting.fail(0);
        try {
            NativeTesting.fail(77);
            fail("77 is no code");
        } catch (InvalidArgumentException e) {
            assertSame(ErrorCode.INVALID_ARGUMENT, e.code());
        }
    }

    @Test
    public void aPanicIsCaughtAndTypedAndTheLibraryGoesOn() throws SyncException {
        for (int i = 0; i < 3; i++) {
            try {
                NativeTesting.panic();
                fail("no exception for a panic");
            } catch (InternalException e) {
                assertSame(ErrorCode.PANIC, e.code());
                assertTrue(e.getMessage(), e.getMessage().contains("panicked"));
                assertFalse("the panic's own text is not passed on",
                        e.getMessage().contains("forced panic"));
            }
        }
        NativeTesting.fail(0);
        assertTrue(SyncEngine.version().startsWith("0."));
    }
}
