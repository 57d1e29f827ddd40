// The trust material INE ships inside the app: the endpoint's X25519 key, the INE root, the
// endpoint's CA and pins.
package mx.ine.apoyo.sync;

/**
 * What INE provisions into the app (docs/protocol.md §10 and 5.7): the endpoint's public key,
 * to which every capture's data key is sealed; the INE root, the Ed25519 key that certifies
 * the endpoint's keys (a capture is deleted only on a receipt that chains to it); and for
 * {@code https} endpoints the CA certificate (PEM) and/or pinned SHA-256 digests of the
 * endpoint's SubjectPublicKeyInfo. TLS is verified by the library against these, not by the
 * platform's trust store.
 *
 * <p>The INE root is required: {@code SyncEngine.create} / {@code open} throw
 * {@link InvalidArgumentException} when it is null, empty or not an INE root line.
 */
public final class Provisioning {
    final byte[] endpointPublicKey;
    final String ineRoot;
    final byte[] caPem;
    final byte[] pins;

    /**
     * @param endpointPublicKey INE's X25519 public key, 32 bytes
     * @param ineRoot the INE root as INE provisions it: the line
     *     {@code apoyo-ine-root-v1 <64 hex>} (the endpoint's {@code ine-root.pub})
     */
    public Provisioning(byte[] endpointPublicKey, String ineRoot) {
        this(endpointPublicKey, ineRoot, null, null);
    }

    /**
     * @param caPem the endpoint's CA (PEM), or null
     * @param pins 32-byte SPKI digests back to back, or null
     */
    public Provisioning(byte[] endpointPublicKey, String ineRoot, byte[] caPem, byte[] pins) {
        this.endpointPublicKey = endpointPublicKey;
        this.ineRoot = ineRoot;
        this.caPem = caPem;
        this.pins = pins;
    }
}
