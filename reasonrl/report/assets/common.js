// Shared by the run report and the compare page (inlined before each page's own script): DOM and SVG builders
// that set text with textContent only, number formatting, the series colours, and the error flag the tests read.
"use strict";
window.addEventListener("error", function (e) { document.body.dataset.error = String(e.message); });

const SVG = "http://www.w3.org/2000/svg";
const COLORS = ["#2f6fdf", "#e0702b", "#1a9a5a", "#c23a8b", "#7b52c7", "#b8901a", "#1f9fb4", "#d0423a",
                "#5d6b7e", "#8fb02b"];

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}
function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  return node;
}
function fmt(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  if (typeof v !== "number") return typeof v === "object" ? JSON.stringify(v) : String(v);
  if (Number.isInteger(v) && Math.abs(v) < 1e6) return String(v);
  const a = Math.abs(v);
  return (a !== 0 && (a < 1e-3 || a >= 1e5)) ? v.toExponential(2) : String(Number(v.toPrecision(4)));
}
