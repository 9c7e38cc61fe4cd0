import { defineConfig } from "vite";

// No React plugin: Oxc compiles TSX with the automatic JSX runtime, which is all the build needs.
// `npm run dev` proxies the API to a server started separately (NORMCODE_DEV_API, default :8080).
const apiTarget = process.env.NORMCODE_DEV_API ?? "http://127.0.0.1:8080";

export default defineConfig({
  base: "/",
  oxc: { jsx: { runtime: "automatic" } },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    sourcemap: false,
    chunkSizeWarningLimit: 400,
    rolldownOptions: {
      // React Flow marks itself "use client" for server-component bundlers; meaningless here.
      onLog(level, log, handler) {
        if (log.code === "MODULE_LEVEL_DIRECTIVE") return;
        handler(level, log);
      },
    },
  },
  server: {
    proxy: {
      "/api": { target: apiTarget, changeOrigin: true },
      "/health": { target: apiTarget, changeOrigin: true },
      "/ready": { target: apiTarget, changeOrigin: true },
    },
  },
});
