// seva inspect's gallery: sorting, filtering, paging and marking pairs to leave out of `seva export --exclude`.
// Inlined into the page: no network, no library.
(() => {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const info = JSON.parse($("gallery-info").textContent);
  const list = $("pairs");
  const items = Array.from(list.querySelectorAll("section.pair")).map((el) => ({
    el,
    id: el.dataset.id,
    status: el.dataset.status,
    position: Number(el.dataset.position),
    truncated: el.dataset.truncated !== "",
    values: JSON.parse(el.dataset.values),
  }));
  const storeKey = "seva-exclude:" + info.dataset + ":" + info.fingerprint;
  const marked = new Set(loadMarks());
  let page = 0;
  let descending = false;

  function loadMarks() {
    try {
      return JSON.parse(window.localStorage.getItem(storeKey) || "[]");
    } catch (e) {
      return []; // no storage (a locked-down browser): marks last while the page is open
    }
  }
  function saveMarks() {
    try {
      window.localStorage.setItem(storeKey, JSON.stringify([...marked]));
    } catch (e) {
      // as above
    }
  }
  function value(item, key) {
    return key === "position" ? item.position : item.values[key];
  }
  function visible() {
    const status = $("status").value;
    const onlyCut = $("truncated").checked;
    const key = $("where-key").value;
    const atLeast = $("where-op").value === "min";
    const bound = parseFloat($("where-value").value);
    return items.filter((it) => {
      if (status && it.status !== status) return false;
      if (onlyCut && !it.truncated) return false;
      if (!key || Number.isNaN(bound)) return true;
      const v = it.values[key];
      return v !== undefined && (atLeast ? v >= bound : v <= bound);
    });
  }
  function sorted(shown) {
    const key = $("sort").value;
    const sign = descending ? -1 : 1;
    return shown.slice().sort((a, b) => {
      const x = value(a, key);
      const y = value(b, key);
      if (x === undefined || y === undefined) return (x === undefined) - (y === undefined) || a.position - b.position;
      return sign * (x - y) || a.position - b.position; // pairs without the score go last
    });
  }
  function render() {
    const shown = sorted(visible());
    const pages = Math.max(1, Math.ceil(shown.length / info.page_size));
    page = Math.min(page, pages - 1);
    const onPage = new Set(shown.slice(page * info.page_size, (page + 1) * info.page_size));
    for (const it of items) it.el.hidden = !onPage.has(it);
    for (const it of shown) list.appendChild(it.el); // the page shows them in this order
    $("count").textContent = shown.length + " of " + items.length + " pairs";
    $("page").textContent = "page " + (page + 1) + " of " + pages;
    $("prev").disabled = page === 0;
    $("next").disabled = page >= pages - 1;
  }
  function showMarks() {
    for (const it of items) {
      const box = it.el.querySelector("input.exclude");
      if (!box) continue;
      box.checked = marked.has(it.id);
      it.el.classList.toggle("marked", box.checked);
    }
    $("marked").textContent = String(marked.size);
    $("download").disabled = marked.size === 0;
  }
  function download() {
    const body = JSON.stringify({ dataset: info.dataset, fingerprint: info.fingerprint, exclude: [...marked].sort() }, null, 1) + "\n";
    const link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob([body], { type: "application/json" }));
    link.download = info.dataset + ".exclude.json";
    document.body.appendChild(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 1000);
  }

  list.addEventListener("change", (event) => {
    const box = event.target;
    if (!box.matches("input.exclude")) return;
    const id = box.closest("section.pair").dataset.id;
    if (box.checked) marked.add(id);
    else marked.delete(id);
    saveMarks();
    showMarks();
  });
  for (const id of ["sort", "status", "truncated", "where-key", "where-op", "where-value"]) {
    for (const kind of ["input", "change"]) {
      $(id).addEventListener(kind, () => {
        page = 0;
        render();
      });
    }
  }
  $("order").addEventListener("click", () => {
    descending = !descending;
    $("order").textContent = descending ? "descending" : "ascending";
    render();
  });
  $("prev").addEventListener("click", () => {
    page -= 1;
    render();
  });
  $("next").addEventListener("click", () => {
    page += 1;
    render();
  });
  $("download").addEventListener("click", download);
  $("clear").addEventListener("click", () => {
    marked.clear();
    saveMarks();
    showMarks();
  });
  showMarks();
  render();
})();
