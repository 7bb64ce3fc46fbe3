// The pages work without this file; it adds a confirmation before destructive
// actions and an optional auto-refresh of the queues page.
"use strict";
document.addEventListener("submit", (event) => {
  const question = event.target.getAttribute("data-confirm");
  if (question && !window.confirm(question)) event.preventDefault();
});
document.addEventListener("DOMContentLoaded", () => {
  const box = document.getElementById("autorefresh");
  if (!box) return;
  box.checked = sessionStorage.getItem("corral-autorefresh") === "1";
  box.addEventListener("change", () => {
    sessionStorage.setItem("corral-autorefresh", box.checked ? "1" : "0");
  });
  setInterval(() => { if (box.checked) window.location.reload(); }, 5000);
});
