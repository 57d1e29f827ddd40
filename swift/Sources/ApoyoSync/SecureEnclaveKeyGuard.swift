// The iOS key guard: the store's master key wrapped to a P-256 key in the Secure Enclave (or,
// where the device has none, a P-256 key in the Keychain), through ECIES. Apple platforms only
// (`Security`, `CryptoKit`); the Linux XCTest run cannot execute it (no Keychain), so CI only
// proves the rest of the package. See docs/embedding.md, "## iOS (Swift)".
//
// Why this shape:
// - The Secure Enclave holds only P-256 (secp256r1) private keys and does not encrypt with a
//   symmetric key, so the 32-byte master key cannot simply be stored "in" it. Instead it is
//   encrypted to the enclave key's public half with ECIES
//   (`.eciesEncryptionCofactorVariableIVX963SHA256AESGCM`: an ephemeral P-256 key, cofactor
//   ECDH, X9.63 KDF with SHA-256, AES-GCM with a derived IV). Encrypting needs only the public
//   key; decrypting happens inside the enclave, and the private key never leaves it.
// - The key is created `kSecAttrAccessibleAfterFirstUnlockThisDeviceOnly`: usable while the
//   phone is locked once it has been unlocked after boot, so a background sync
//   (BGProcessingTask) can open the store; "ThisDeviceOnly" keeps it out of backups and off
//   other devices, so a copied store is refused (`.wrongDevice`).
// - No user-presence or biometry flag: re-enrolling a fingerprint or Face ID would otherwise
//   invalidate the key and make every unsent capture unreadable.
// - The store's label is bound in: its SHA-256 is encrypted with the key and checked on unwrap,
//   so a wrapped key cannot be moved to another store.

#if canImport(Security) && canImport(CryptoKit)
import CryptoKit
import Foundation
import Security

public final class SecureEnclaveKeyGuard: KeyGuard {
    /// The Keychain application tag of the P-256 private key.
    public let tag: String
    private static let algorithm = SecKeyAlgorithm.eciesEncryptionCofactorVariableIVX963SHA256AESGCM

    /// `tag` names the key in the Keychain, e.g. "mx.ine.apoyo.master"; one per store.
    public init(tag: String) {
        self.tag = tag
    }

    public func wrap(masterKey: [UInt8], label: [UInt8]) throws -> [UInt8] {
        let privateKey = try existingKey() ?? createKey()
        guard let publicKey = SecKeyCopyPublicKey(privateKey),
              SecKeyIsAlgorithmSupported(publicKey, .encrypt, Self.algorithm)
        else { throw KeyGuardError.unavailable }
        var plain = Data(SHA256.hash(data: label)) + Data(masterKey)
        defer { plain.resetBytes(in: 0..<plain.count) }
        var error: Unmanaged<CFError>?
        guard let sealed = SecKeyCreateEncryptedData(publicKey, Self.algorithm, plain as CFData, &error) else {
            throw KeyGuardError.unavailable
        }
        return [UInt8](sealed as Data)
    }

    public func unwrap(wrappedKey: [UInt8], label: [UInt8]) throws -> [UInt8] {
        // No key: deleted, or this is another device (the key never left the one that made it).
        guard let privateKey = try existingKey() else { throw KeyGuardError.unavailable }
        var error: Unmanaged<CFError>?
        guard let opened = SecKeyCreateDecryptedData(privateKey, Self.algorithm, Data(wrappedKey) as CFData, &error) else {
            // The key exists but does not open it: made by another device's key.
            throw KeyGuardError.wrongDevice
        }
        var plain = opened as Data
        defer { plain.resetBytes(in: 0..<plain.count) }
        guard plain.count == 64, plain.prefix(32) == Data(SHA256.hash(data: label)) else {
            throw KeyGuardError.wrongDevice
        }
        return [UInt8](plain.suffix(32))
    }

    /// The private key, or nil when there is none. A locked device (before first unlock)
    /// answers `errSecInteractionNotAllowed`: the key exists but is unavailable now.
    private func existingKey() throws -> SecKey? {
        let query: [CFString: Any] = [
            kSecClass: kSecClassKey,
            kSecAttrKeyType: kSecAttrKeyTypeECSECPrimeRandom,
            kSecAttrApplicationTag: Data(tag.utf8),
            kSecUseDataProtectionKeychain: true,
            kSecReturnRef: true,
        ]
        var item: CFTypeRef?
        switch SecItemCopyMatching(query as CFDictionary, &item) {
        case errSecSuccess:
            guard let item, CFGetTypeID(item) == SecKeyGetTypeID() else { throw KeyGuardError.unavailable }
            return (item as! SecKey)  // checked by the type id above
        case errSecItemNotFound:
            return nil
        default:
            throw KeyGuardError.unavailable
        }
    }

    /// A new permanent P-256 key: in the Secure Enclave when the device has one.
    private func createKey() throws -> SecKey {
        let enclave = SecureEnclave.isAvailable
        guard let access = SecAccessControlCreateWithFlags(
            nil, kSecAttrAccessibleAfterFirstUnlockThisDeviceOnly, enclave ? .privateKeyUsage : [], nil)
        else { throw KeyGuardError.unavailable }
        var attributes: [CFString: Any] = [
            kSecAttrKeyType: kSecAttrKeyTypeECSECPrimeRandom,
            kSecAttrKeySizeInBits: 256,
            kSecUseDataProtectionKeychain: true,
            kSecPrivateKeyAttrs: [
                kSecAttrIsPermanent: true,
                kSecAttrApplicationTag: Data(tag.utf8),
                kSecAttrAccessControl: access,
            ] as [CFString: Any],
        ]
        if enclave { attributes[kSecAttrTokenID] = kSecAttrTokenIDSecureEnclave }
        var error: Unmanaged<CFError>?
        guard let key = SecKeyCreateRandomKey(attributes as CFDictionary, &error) else {
            throw KeyGuardError.unavailable
        }
        return key
    }
}
#endif
