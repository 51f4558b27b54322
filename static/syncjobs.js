// Sync jobs, traffic control, drills, remote restore: grid row selection and dialogs opened by the server.
(function () {
  if (window.pbswebGridSelect) return;
  window.pbswebGridSelect = true;
  let current = null;
  function selectedId(toolbar) {
    const grid = document.querySelector(toolbar.dataset.selectionFor);
    const row = grid && grid.querySelector("tbody tr.selected[data-id]");
    return row ? row.dataset.id : null;
  }
  function update() {
    document.querySelectorAll("[data-selection-for]").forEach(function (tb) {
      const id = selectedId(tb);
      tb.querySelectorAll("[data-needs-selection]").forEach(function (b) { b.disabled = !id; });
    });
  }
  function select(row) {
    row.parentNode.querySelectorAll("tr.selected").forEach(function (r) { r.classList.remove("selected"); });
    row.classList.add("selected");
    current = row.dataset.id;
    update();
  }
  function act(btn) {
    const tb = btn.closest("[data-selection-for]");
    const id = selectedId(tb);
    if (!id) return;
    const url = function (t) { return t.split("__ID__").join(encodeURIComponent(id)); };
    if (btn.dataset.confirmText && !window.confirm(btn.dataset.confirmText.split("__ID__").join(id))) return;
    if (btn.dataset.dialogUrl) {
      htmx.ajax("GET", url(btn.dataset.dialogUrl), {target: "#dialog-slot"});
    } else if (btn.dataset.postUrl) {
      const form = document.getElementById(tb.dataset.form);
      form.action = url(btn.dataset.postUrl);
      if (form.elements.reconcile) form.elements.reconcile.value = btn.dataset.postExtra === "reconcile" ? "1" : "";
      form.submit();
    } else if (btn.dataset.goUrl) {
      window.location.href = url(btn.dataset.goUrl);
    }
  }
  document.addEventListener("click", function (e) {
    const btn = e.target.closest("[data-selection-for] [data-needs-selection]");
    if (btn) { act(btn); return; }
    const row = e.target.closest("table.selectable tbody tr[data-id]");
    if (row && !e.target.closest("a")) select(row);
  });
  document.addEventListener("dblclick", function (e) {
    const row = e.target.closest("table.selectable tbody tr[data-id]");
    if (!row) return;
    select(row);
    const tb = document.querySelector("[data-selection-for]");
    const edit = tb && tb.querySelector("[data-dialog-url]");
    if (edit) act(edit);
  });
  document.addEventListener("htmx:afterSwap", function () {
    if (current) {
      document.querySelectorAll("table.selectable tbody tr[data-id]").forEach(function (r) {
        if (r.dataset.id === current) r.classList.add("selected");
      });
    }
    update();
  });
  document.addEventListener("DOMContentLoaded", function () {
    // a dialog the server rendered open (a bad value, or a page of its own) is a modal window
    const d = document.querySelector("dialog[open].syncjob-dialog, dialog[open].rule-dialog, " +
                                     "dialog[open].drill-dialog, dialog[open].restore-dialog, " +
                                     "dialog[open].syncjob-as-of-dialog");
    if (d) { d.close(); d.showModal(); }
  });
})();
