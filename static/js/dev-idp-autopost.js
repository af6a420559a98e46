// Development identity provider: send the signed SAMLResponse to Relais at once (HTTP-POST
// binding). A file of our own, since the CSP allows no inline script; the visible "Continuer"
// button does the same without JavaScript.
"use strict";
(function () {
  var form = document.querySelector("form[data-autopost]");
  if (form) {
    form.submit();
  }
})();
