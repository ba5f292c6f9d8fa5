package io.ringbroker.e2e;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Replaces or adds keys in a TOML profile, section by section, so a test can
 * run the shipped profile with a few settings changed. Handles the flat
 * "[section]\nkey = value" shape of tuning/*.toml, nothing more.
 */
final class TomlOverlay {
    private TomlOverlay() {}

    /** {@code overrides}: "section.key" -> TOML value literal. */
    static String apply(String toml, Map<String, String> overrides) {
        Map<String, Map<String, String>> bySection = new LinkedHashMap<>();
        for (Map.Entry<String, String> e : overrides.entrySet()) {
            int dot = e.getKey().indexOf('.');
            if (dot <= 0) {
                throw new IllegalArgumentException("override key must be section.key: " + e.getKey());
            }
            bySection.computeIfAbsent(e.getKey().substring(0, dot), k -> new LinkedHashMap<>())
                    .put(e.getKey().substring(dot + 1), e.getValue());
        }
        List<String> out = new ArrayList<>();
        String section = "";
        Map<String, String> pending = new LinkedHashMap<>();
        for (String line : toml.split("\n", -1)) {
            String t = line.trim();
            if (t.startsWith("[")) {
                flush(out, pending);
                section = t.replaceAll("^\\[+|\\]+$", "");
                pending = new LinkedHashMap<>(bySection.getOrDefault(section, Map.of()));
                bySection.remove(section);
                out.add(line);
                continue;
            }
            int eq = t.indexOf('=');
            if (eq > 0 && !t.startsWith("#")) {
                String key = t.substring(0, eq).trim();
                if (pending.containsKey(key)) {
                    out.add(key + " = " + pending.remove(key));
                    continue;
                }
            }
            out.add(line);
        }
        flush(out, pending);
        for (Map.Entry<String, Map<String, String>> s : bySection.entrySet()) {
            out.add("[" + s.getKey() + "]");
            flush(out, s.getValue());
        }
        return String.join("\n", out);
    }

    private static void flush(List<String> out, Map<String, String> pending) {
        // Keys the section did not have go at its end (before the next header).
        for (Map.Entry<String, String> e : pending.entrySet()) {
            out.add(e.getKey() + " = " + e.getValue());
        }
        pending.clear();
    }
}
