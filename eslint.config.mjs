import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  {
    ignores: [
      'dist/**',
      'node_modules/**',
      '.node-red-demo/**',
      'test-artifacts/**',
      'bench-out/**',
      '.node22/**',
      '.tflite-ref/**',
      '.arm64/**',
      'lib/models/convert/tflite/schema/tflite-schema.ts',
      'lib/models/onnx-proto/**',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      globals: {
        console: 'readonly',
        process: 'readonly',
        Buffer: 'readonly',
        setTimeout: 'readonly',
        clearTimeout: 'readonly',
        setInterval: 'readonly',
        clearInterval: 'readonly',
        URL: 'readonly',
        setImmediate: 'readonly',
        performance: 'readonly',
        fetch: 'readonly',
        AbortController: 'readonly',
      },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-require-imports': 'off',
    },
  },
  {
    // Editor-side scripts inside node .html files are not linted; browser globals for test pages.
    files: ['test/browser/**/*.ts'],
    languageOptions: { globals: { window: 'readonly', document: 'readonly', RED: 'readonly' } },
  },
);
