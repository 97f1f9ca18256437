// pydfs web UI: confirm before a delete form is sent. Without JavaScript the server asks instead.
"use strict";
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (!(form instanceof HTMLFormElement) || !form.dataset.confirm) return;
  if (!window.confirm(form.dataset.confirm)) {
    event.preventDefault();
    return;
  }
  form.elements.namedItem("confirmed").value = "1";
});
