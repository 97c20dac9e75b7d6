// The `hushcode.*` settings in the server's camelCase shape (lsp/config.py `Settings`).
import * as vscode from 'vscode';

export interface ServerSettings {
  model: { name: string; threads: number; contextSize: number };
  completion: {
    inline: boolean;
    maxPromptTokens: number;
    contextTokens: number;
    debounceMinMs: number;
    debounceMaxMs: number;
    warmup: boolean;
  };
  index: { enabled: boolean };
  actions: { enabled: boolean };
  disabledLanguages: string[];
  logLevel: string;
}

/**
 * Built from the contributed settings only, so the server sees the same object in
 * `initializationOptions` and in `workspace/configuration` (no `server.command`, no stray keys).
 */
export function serverSettings(scope?: vscode.ConfigurationScope | null): ServerSettings {
  const c = vscode.workspace.getConfiguration('hushcode', scope);
  return {
    model: {
      name: c.get<string>('model.name', 'auto'),
      threads: c.get<number>('model.threads', 0),
      contextSize: c.get<number>('model.contextSize', 4096),
    },
    completion: {
      inline: c.get<boolean>('completion.inline', true),
      maxPromptTokens: c.get<number>('completion.maxPromptTokens', 1500),
      contextTokens: c.get<number>('completion.contextTokens', 400),
      debounceMinMs: c.get<number>('completion.debounceMinMs', 25),
      debounceMaxMs: c.get<number>('completion.debounceMaxMs', 250),
      warmup: c.get<boolean>('completion.warmup', true),
    },
    index: { enabled: c.get<boolean>('index.enabled', true) },
    actions: { enabled: c.get<boolean>('actions.enabled', true) },
    disabledLanguages: c.get<string[]>('disabledLanguages', []),
    logLevel: c.get<string>('logLevel', 'info'),
  };
}
