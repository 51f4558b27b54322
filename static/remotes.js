// Remotes: provider presets in the Add/Edit dialog, and "Apply" for proposed quirk settings.
(function () {
  function presets() {
    const el = document.getElementById("remote-presets");
    try { return el ? JSON.parse(el.textContent) : {}; } catch (e) { return {}; }
  }
  function form() { return document.getElementById("remote-form"); }
  function field(f, name) { return f && f.elements.namedItem(name); }
  function templates() {
    return Object.values(presets()).map(p => p.endpoint);
  }
  // Show the region format and key permissions of the chosen provider.
  function showHints(f, preset) {
    const hint = document.getElementById("remote-region-hint");
    if (hint) hint.textContent = preset ? preset.region_hint : "";
    const help = document.getElementById("remote-key-help");
    if (help) help.textContent = preset ? preset.key_help : "";
    const region = field(f, "region");
    if (region && preset) region.placeholder = preset.region_example;
  }
  function applyProvider(f, key, fill) {
    const preset = presets()[key];
    showHints(f, preset);
    if (!preset || !fill) return;
    const endpoint = field(f, "endpoint");
    // Replace the endpoint only if it is empty or still another provider's template.
    if (endpoint && (!endpoint.value.trim() || templates().includes(endpoint.value.trim()))) {
      endpoint.value = preset.endpoint;
    }
    const quirks = Object.assign({path_style: true, skip_if_none_match: false,
      delete_via_delete_object: false, no_checksum_headers: true, min_storage_days: 0,
      daily_cap_class_a: "", daily_cap_class_b: "", daily_cap_class_c: ""}, preset.quirks);
    applyValues(f, quirks);
  }
  function applyValues(f, values) {
    Object.entries(values).forEach(([name, value]) => {
      const input = field(f, name);
      if (!input) return;
      if (input.type === "checkbox") input.checked = !!value;
      else input.value = value;
      input.classList.add("remote-applied");
    });
  }
  document.addEventListener("change", function (e) {
    if (e.target.name === "provider" && e.target.form && e.target.form.id === "remote-form") {
      applyProvider(e.target.form, e.target.value, true);
    }
  });
  document.addEventListener("click", function (e) {
    const button = e.target.closest("[data-apply-quirks]");
    if (!button) return;
    const f = form();
    if (!f) return;
    applyValues(f, JSON.parse(button.dataset.applyQuirks));
    const advanced = f.querySelector("details.remote-advanced");
    if (advanced) advanced.open = true;
    button.disabled = true;
    button.textContent = "Applied";
  });
  // A freshly opened dialog shows the hints of its provider.
  function init() {
    const f = form();
    if (f && !f.dataset.remotesInit) {
      f.dataset.remotesInit = "1";
      const provider = field(f, "provider");
      if (provider) applyProvider(f, provider.value, false);
    }
  }
  document.addEventListener("htmx:afterSettle", init);
  document.addEventListener("DOMContentLoaded", init);
})();
