// Opens the built deck in the system Chromium and reports what a viewer would meet, as JSON on stdout.
//   node slides/check_deck.mjs slides/build/index.html [screenshot-dir] [slide numbers to screenshot, e.g. 1,5,12]
// tests/test_slides.py runs it and asserts on the report; the script itself only observes.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";

const [deck, shotDir, shotList = ""] = process.argv.slice(2);
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
const browser = await chromium.launch({
  executablePath,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const report = { consoleErrors: [], pageErrors: [], requests: [], slides: [], images: [], notesWindow: null };
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 720 } });
  const page = await context.newPage();
  page.on("console", (msg) => { if (msg.type() === "error") report.consoleErrors.push(msg.text()); });
  page.on("pageerror", (err) => report.pageErrors.push(String(err)));
  // A self-contained deck fetches nothing: every request other than the file itself is recorded.
  const url = pathToFileURL(resolve(deck)).href;
  page.on("request", (req) => { if (req.url() !== url && !req.url().startsWith("data:")) report.requests.push(req.url()); });
  await page.goto(url);
  await page.waitForFunction(() => window.Reveal && window.Reveal.isReady(), null, { timeout: 30000 });
  await page.evaluate(() => Reveal.configure({ transition: "none", backgroundTransition: "none" }));
  report.total = await page.evaluate(() => Reveal.getTotalSlides());
  const wanted = new Set(shotList.split(",").filter(Boolean).map(Number));
  if (shotDir) mkdirSync(shotDir, { recursive: true });

  for (let n = 1; n <= report.total; n++) {
    // Visit slide n as a presenter would, then measure what is on screen.
    const info = await page.evaluate(async (n) => {
      const slide = Reveal.getSlides()[n - 1];
      const { h, v } = Reveal.getIndices(slide);
      Reveal.slide(h, v);
      await new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)));
      const box = slide.getBoundingClientRect();
      const images = [...slide.querySelectorAll("img")];
      await Promise.all(images.map((img) => img.decode().catch(() => {})));
      return {
        number: n,
        current: Reveal.getCurrentSlide() === slide,
        title: (slide.querySelector("h1, h2")?.textContent || "").trim(),
        text: slide.innerText.trim().length,
        width: box.width,
        height: box.height,
        // content taller than the slide is cut off on screen
        overflow: slide.scrollHeight - Reveal.getConfig().height,
        notes: (Reveal.getSlideNotes(slide) || "").trim().length,
        code: slide.querySelectorAll("pre code").length,
        highlighted: slide.querySelectorAll("pre code.hljs").length,
        // code that needs a scroll bar to be read on the projector
        clippedCode: [...slide.querySelectorAll("pre code")].filter(
          (c) => c.scrollWidth > c.clientWidth + 1 || c.scrollHeight > c.clientHeight + 1).length,
        images: images.map((img) => ({ alt: img.alt, complete: img.complete, width: img.naturalWidth,
          shownWidth: img.getBoundingClientRect().width, shownHeight: img.getBoundingClientRect().height })),
      };
    }, n);
    report.slides.push(info);
    if (wanted.has(n) && shotDir) await page.screenshot({ path: `${shotDir}/slide-${String(n).padStart(2, "0")}.png` });
  }

  // The speaker view: S opens a window with the current slide's notes.
  await page.evaluate(() => Reveal.slide(0, 0));
  const [popup] = await Promise.all([page.waitForEvent("popup", { timeout: 10000 }), page.keyboard.press("s")]);
  popup.on("pageerror", (err) => report.pageErrors.push(`speaker view: ${err}`));
  await popup.waitForFunction(() => {
    const notes = document.querySelector(".speaker-controls-notes .value");
    return notes && notes.textContent.trim().length > 0;
  }, null, { timeout: 15000 });
  report.notesWindow = await popup.evaluate(() => document.querySelector(".speaker-controls-notes .value").textContent.trim());
  if (shotDir) await popup.screenshot({ path: `${shotDir}/speaker-view.png` });
} finally {
  await browser.close();
}
console.log(JSON.stringify(report));
