// Passkeys on the accounts pages: turns a form with data-webauthn="create" or "get" and the
// ceremony's options (data-options, JSON from the server) into a call of the browser's WebAuthn
// API, puts the answer into the form's hidden "credential" field and sends the form. Without
// this script (or without WebAuthn in the browser) the form stays hidden and the page says why.
(function () {
  "use strict";

  function toBytes(text) {
    var base64 = text.replace(/-/g, "+").replace(/_/g, "/");
    while (base64.length % 4) { base64 += "="; }
    var binary = atob(base64);
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) { bytes[i] = binary.charCodeAt(i); }
    return bytes.buffer;
  }

  function toText(buffer) {
    var bytes = new Uint8Array(buffer);
    var binary = "";
    for (var i = 0; i < bytes.length; i++) { binary += String.fromCharCode(bytes[i]); }
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function descriptors(list) {
    return (list || []).map(function (item) {
      return { type: item.type, id: toBytes(item.id), transports: item.transports };
    });
  }

  function creationOptions(options) {
    options.challenge = toBytes(options.challenge);
    options.user.id = toBytes(options.user.id);
    options.excludeCredentials = descriptors(options.excludeCredentials);
    return options;
  }

  function requestOptions(options) {
    options.challenge = toBytes(options.challenge);
    options.allowCredentials = descriptors(options.allowCredentials);
    return options;
  }

  function answer(credential) {
    var response = credential.response;
    var result = {
      id: credential.id,
      rawId: toText(credential.rawId),
      type: credential.type,
      clientExtensionResults: credential.getClientExtensionResults(),
      authenticatorAttachment: credential.authenticatorAttachment || undefined,
      response: { clientDataJSON: toText(response.clientDataJSON) }
    };
    if (response.attestationObject) {
      result.response.attestationObject = toText(response.attestationObject);
      if (response.getTransports) { result.response.transports = response.getTransports(); }
    } else {
      result.response.authenticatorData = toText(response.authenticatorData);
      result.response.signature = toText(response.signature);
      if (response.userHandle) { result.response.userHandle = toText(response.userHandle); }
    }
    return JSON.stringify(result);
  }

  function show(form, selector) {
    var element = form.parentNode.querySelector(selector);
    if (element) { element.hidden = false; }
  }

  Array.prototype.forEach.call(document.querySelectorAll("form[data-webauthn]"), function (form) {
    if (!window.PublicKeyCredential || !navigator.credentials) {
      show(form, "[data-webauthn-unsupported]");
      return;
    }
    form.hidden = false;
    var sending = false;
    form.addEventListener("submit", function (event) {
      if (sending) { return; }
      event.preventDefault();
      var options = JSON.parse(form.getAttribute("data-options"));
      var call = form.getAttribute("data-webauthn") === "create"
        ? navigator.credentials.create({ publicKey: creationOptions(options) })
        : navigator.credentials.get({ publicKey: requestOptions(options) });
      call.then(function (credential) {
        form.querySelector("input[name=credential]").value = answer(credential);
        sending = true;
        form.submit();
      }, function () {
        show(form, "[data-webauthn-failed]");
        var failed = form.parentNode.querySelector("[data-webauthn-failed]");
        if (failed) { failed.focus(); }
      });
    });
  });
})();
