// pbsweb: the few behaviours htmx does not cover (dialogs, theme, grid sorting).
(function () {
  // A dialog fragment swapped into #dialog-slot opens as a modal window.
  document.addEventListener("htmx:afterSwap", function (e) {
    const dialog = e.detail.target.querySelector && e.detail.target.querySelector("dialog");
    if (dialog && !dialog.open) dialog.showModal();
  });
  document.addEventListener("click", function (e) {
    const opener = e.target.closest("[data-dialog-open]");
    if (opener) { document.querySelector(opener.dataset.dialogOpen).showModal(); e.preventDefault(); }
    const closer = e.target.closest("[data-dialog-close]");
    if (closer) { closer.closest("dialog").close(); e.preventDefault(); }
    if (e.target.closest("[data-theme-toggle]")) {
      const next = document.documentElement.dataset.theme === "dark" ? "light" : "dark";
      document.documentElement.dataset.theme = next;
      document.cookie = "theme=" + next + ";path=/;max-age=31536000;SameSite=Lax";
    }
    if (e.target.closest("[data-print]")) window.print();
    const th = e.target.closest("th[data-sort]");
    if (th) sortGrid(th);
    // Destructive actions name what will be lost before they run.
    const confirmer = e.target.closest("[data-confirm]");
    if (confirmer && !window.confirm(confirmer.dataset.confirm)) { e.preventDefault(); e.stopPropagation(); }
  }, true);
  function sortGrid(th) {
    const table = th.closest("table"), body = table.tBodies[0];
    const index = Array.from(th.parentNode.children).indexOf(th);
    const dir = th.dataset.dir === "asc" ? "desc" : "asc";
    th.parentNode.querySelectorAll("th").forEach(h => delete h.dataset.dir);
    th.dataset.dir = dir;
    const key = r => (r.children[index] && (r.children[index].dataset.value || r.children[index].textContent.trim())) || "";
    const rows = Array.from(body.rows);
    rows.sort((a, b) => {
      const x = key(a), y = key(b), nx = parseFloat(x), ny = parseFloat(y);
      const c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
      return dir === "asc" ? c : -c;
    });
    rows.forEach(r => body.appendChild(r));
  }
  // <select data-autosubmit>: choosing an option submits its form (the task list filters)
  document.addEventListener("change", function (e) {
    if (e.target.matches && e.target.matches("select[data-autosubmit]")) e.target.form.submit();
  });
  // Grid filter boxes: <input data-grid-filter="#table-id">
  document.addEventListener("input", function (e) {
    const sel = e.target.dataset && e.target.dataset.gridFilter;
    if (!sel) return;
    const q = e.target.value.toLowerCase();
    document.querySelectorAll(sel + " tbody tr").forEach(r => { r.hidden = q && !r.textContent.toLowerCase().includes(q); });
  });
})();
