// pydfs web UI: confirm before a delete or an upload is sent, and show where a new directory
// will go. Without JavaScript the server asks before a delete instead, and an upload never
// replaces a file unless "replace existing" is ticked.
"use strict";

function uploadQuestion(form) {
  const files = Array.from(form.elements.namedItem("file").files).map((f) => f.name);
  const shown = files.length > 5 ? files.slice(0, 5).join(", ") + ", …" : files.join(", ");
  const count = files.length === 1 ? "1 file" : `${files.length} files`;
  const replace = form.elements.namedItem("overwrite").checked
    ? " Files of the same name there are replaced."
    : " A file of the same name there stops the upload.";
  return `Upload ${count} (${shown}) to ${form.dataset.upload}?${replace}`;
}

document.addEventListener("submit", (event) => {
  const form = event.target;
  if (!(form instanceof HTMLFormElement)) return;
  const question = form.dataset.confirm || (form.dataset.upload && uploadQuestion(form));
  if (!question) return;
  if (!window.confirm(question)) {
    event.preventDefault();
    return;
  }
  const confirmed = form.elements.namedItem("confirmed");
  if (confirmed) confirmed.value = "1";
});

// Making a directory is harmless and undone with a delete: no dialog, but the form says what
// it will make ("a/b" makes both).
document.addEventListener("input", (event) => {
  const input = event.target;
  const form = input.form;
  if (!form || !form.dataset.dir || input.name !== "name") return;
  const name = input.value.trim().replace(/\/+$/, "");
  const base = form.dataset.dir === "/" ? "" : form.dataset.dir;
  const target = name.startsWith("/") ? name : `${base}/${name}`;
  form.elements.namedItem("preview").value = name ? `makes ${target}` : "";
});
