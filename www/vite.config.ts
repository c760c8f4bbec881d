// Vite build of the dashboard: one page, two views, output in www/dist. The `shoal` package is
// ../wasm (a file: dependency) and the simulator is ../www/sim/pkg; both bring .wasm files that
// Vite copies as assets. Nothing is loaded from a CDN.
import { defineConfig } from "vite";

export default defineConfig({
  base: "./",
  build: { outDir: "dist", emptyOutDir: true, target: "es2022", chunkSizeWarningLimit: 1024 },
  server: { fs: { allow: [".."] } },
});
