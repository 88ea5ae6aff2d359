"""S/MIME 4.0 (RFC 8551) cryptography for siegel, as a library without gateway integration.

* :mod:`.envelope` - :func:`encrypt` / :func:`decrypt`: CMS AuthEnvelopedData (AES-GCM, default)
  and EnvelopedData (AES-CBC); RSA-OAEP / PKCS#1 v1.5 key transport, ECDH key agreement.
* :mod:`.signing` - :func:`sign`: detached SignedData with RSASSA-PSS, RSASSA-PKCS1-v1_5 or
  ECDSA; :mod:`.verification` - :func:`verify`, with chain validation to given trust anchors.
* :mod:`.capabilities` - SMIMECapabilities: what a peer can decrypt, what we announce.
* :mod:`.mime` - multipart/signed and application/pkcs7-mime entities, and :func:`unwrap` for
  incoming messages.
* :mod:`.errors` - every exception derives from :class:`SmimeError`.

Built on asn1crypto (structures) and `cryptography` (primitives); never calls the openssl binary.
"""

from .algorithms import ContentCipher, Digest, RsaKeyTransport, SignaturePadding
from .capabilities import (
    OUR_CAPABILITIES,
    Capability,
    SmimeCapabilities,
    encode_capabilities,
    parse_capabilities,
)
from .envelope import (
    DecryptedEnvelope,
    EncryptOptions,
    decrypt,
    encrypt,
    open_envelope,
)
from .errors import (
    CertificateError,
    ChainValidationError,
    DecryptionError,
    IntegrityError,
    KeyMismatchError,
    MalformedError,
    NoMatchingRecipientError,
    PolicyError,
    SignatureMismatchError,
    SmimeError,
    UnsupportedError,
    VerificationError,
)
from .keys import SUPPORTED_CURVES, PrivateKey
from .mime import (
    SignedEntity,
    UnwrappedEntity,
    assemble_message,
    body_part,
    canonicalize,
    decrypt_entity,
    encrypt_entity,
    entity_bytes,
    sign_and_encrypt_entity,
    sign_entity,
    unwrap,
    verify_signed_entity,
)
from .signing import SignOptions, sign
from .verification import VerifiedSignature, verify

__all__ = [
    "OUR_CAPABILITIES",
    "SUPPORTED_CURVES",
    "Capability",
    "CertificateError",
    "ChainValidationError",
    "ContentCipher",
    "DecryptedEnvelope",
    "DecryptionError",
    "Digest",
    "EncryptOptions",
    "IntegrityError",
    "KeyMismatchError",
    "MalformedError",
    "NoMatchingRecipientError",
    "PolicyError",
    "PrivateKey",
    "RsaKeyTransport",
    "SignOptions",
    "SignatureMismatchError",
    "SignaturePadding",
    "SignedEntity",
    "SmimeCapabilities",
    "SmimeError",
    "UnsupportedError",
    "UnwrappedEntity",
    "VerificationError",
    "VerifiedSignature",
    "assemble_message",
    "body_part",
    "canonicalize",
    "decrypt",
    "decrypt_entity",
    "encode_capabilities",
    "encrypt",
    "encrypt_entity",
    "entity_bytes",
    "open_envelope",
    "parse_capabilities",
    "sign",
    "sign_and_encrypt_entity",
    "sign_entity",
    "unwrap",
    "verify",
    "verify_signed_entity",
]
