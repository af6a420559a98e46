// Draws the letter with pdf.js, from our own origin, page by page into canvases.
// No eval (isEvalSupported: false): the page's CSP allows scripts and workers from 'self' only.
import * as pdfjs from "../vendor/pdfjs/pdf.min.mjs";

const container = document.getElementById("pdf-pages");

async function render() {
  pdfjs.GlobalWorkerOptions.workerSrc = container.dataset.worker;
  const pdf = await pdfjs.getDocument({ url: container.dataset.src, isEvalSupported: false }).promise;
  container.replaceChildren();
  const ratio = window.devicePixelRatio || 1;
  for (let number = 1; number <= pdf.numPages; number += 1) {
    const page = await pdf.getPage(number);
    const width = Math.min(container.clientWidth || 800, 1000);
    const scale = width / page.getViewport({ scale: 1 }).width;
    const viewport = page.getViewport({ scale: scale * ratio });
    const canvas = document.createElement("canvas");
    canvas.className = "pdf-page";
    canvas.width = Math.floor(viewport.width);
    canvas.height = Math.floor(viewport.height);
    canvas.setAttribute("role", "img");
    canvas.setAttribute("aria-label", `${container.dataset.pageLabel} ${number} / ${pdf.numPages}`);
    container.appendChild(canvas);
    await page.render({ canvasContext: canvas.getContext("2d"), viewport }).promise;
  }
  container.dataset.rendered = String(pdf.numPages);
}

if (container) {
  render().catch(() => {
    container.replaceChildren();
    const error = document.querySelector(".pdf-error");
    if (error) error.hidden = false;
  });
}
