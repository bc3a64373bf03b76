using System.CommandLine;
using OnnxOutlierTools.Cli.Analyze;
using OnnxOutlierTools.Cli.Eval;
using OnnxOutlierTools.Evaluation;
using OnnxOutlierTools.IO;

namespace OnnxOutlierTools.Cli.Commands;

/// <summary><c>eval MODEL (--text FILE [--tokenizer PATH] | --ids WINDOWS.json) [--ref REF.onnx] ...</c>: perplexity over strided
/// windows, KL and top-1 against a reference, embedding cosine for encoders, latency; a table, and the JSON with every setting.</summary>
public static class EvalCommand
{
    public static Command Create(CliContext context)
    {
        var model = new Argument<string>("MODEL") { Description = "The .onnx model (with its external data), or a model folder (found as for inspect)." };
        var text = new Option<string?>("--text") { Description = "Evaluation text (UTF-8), encoded into one token stream and cut into windows.", HelpName = "FILE" };
        var ids = new Option<string?>("--ids") { Description = "Token-id windows instead of text: a JSON array of arrays (one window each), each scored exactly as given.", HelpName = "WINDOWS.json" };
        var tokenizer = new Option<string?>("--tokenizer") { Description = "Tokenizer file or folder; default: found beside the model (else beside --ref).", HelpName = "PATH" };
        var reference = new Option<string?>("--ref") { Description = "Reference model (the FP32 original): KL(ref || model) and top-1 agreement of next-token distributions, or embedding cosine for encoders.", HelpName = "REF.onnx" };
        var window = new Option<int?>("--window") { Description = "Window length in positions, BOS or a baked prefix included (default: min(context, 512)).", HelpName = "N" };
        var stride = new Option<int?>("--stride") { Description = "Stream tokens between window starts (default: a window's text tokens, no overlap); with overlap each window scores only tokens no earlier window scored.", HelpName = "N" };
        var maxTokens = new Option<int?>("--max-tokens") { Description = "Tokens of the text stream to use, from its start (default: all).", HelpName = "N" };
        var bos = new Option<string>("--bos")
        {
            Description = "window: every window starts with BOS (context only); document: every paragraph encoded with BOS, windows cut straight from that stream; off; auto (default): window when the tokenizer prepends BOS or a model has a baked sink prefix, else off.",
            HelpName = "auto|window|document|off",
            DefaultValueFactory = _ => "auto",
        };
        var batch = new Option<int?>("--batch-size") { Description = "Windows per run (default 1).", HelpName = "N" };
        var device = new Option<string>("--device") { Description = "auto, cpu or cuda (an error when unavailable).", HelpName = "auto|cpu|cuda", DefaultValueFactory = _ => "auto" };
        var json = new Option<string?>("--json") { Description = "Write the result with every setting as JSON to this file.", HelpName = "OUT.json" };
        var latency = new Option<bool>("--latency") { Description = "Measure prompt latency at the window length and, for KV-cache models, per-token decode latency and tokens/s (warm-up excluded, medians)." };
        var repetitions = new Option<int?>("--repetitions") { Description = "Timed runs for --latency (default 5, after 1 warm-up).", HelpName = "N" };
        var decodeTokens = new Option<int?>("--decode-tokens") { Description = "Tokens decoded one at a time for --latency (default 16).", HelpName = "N" };
        var force = new Option<bool>("--force", "-f") { Description = "Replace the --json file if it exists." };

        var command = new Command("eval",
            "Evaluate a model on ONNX Runtime: perplexity over fixed windows with a stride, KL divergence and top-1 agreement of next-token " +
            "distributions against a reference model, embedding cosine for encoders, latency and tokens/s. A model with a baked sink prefix " +
            "(mitigate --sink-bias) is fed the text without it, its reference the prefix + text, so both score the same tokens.")
        {
            model, text, ids, tokenizer, reference, window, stride, maxTokens, bos, batch, device, json, latency, repetitions, decodeTokens, force,
        };
        command.SetAction(parseResult => context.Guard(parseResult, () =>
        {
            var bosMode = parseResult.GetValue(bos)?.Trim().ToLowerInvariant() switch
            {
                "auto" => EvalBosMode.Auto,
                "window" => EvalBosMode.Window,
                "document" => EvalBosMode.Document,
                "off" => EvalBosMode.Off,
                var other => throw new UsageException($"--bos must be auto, window, document or off, not '{other}'"),
            };
            if (parseResult.GetValue(text) is null == (parseResult.GetValue(ids) is null))
                throw new UsageException(parseResult.GetValue(text) is null ? "give the evaluation input: --text FILE or --ids WINDOWS.json" : "give --text or --ids, not both");
            bool timed = parseResult.GetValue(latency);
            if (!timed && (parseResult.GetValue(repetitions) is not null || parseResult.GetValue(decodeTokens) is not null))
                throw new UsageException("--repetitions and --decode-tokens go with --latency");
            var request = new EvalRequest
            {
                Model = parseResult.GetValue(model)!,
                Reference = parseResult.GetValue(reference),
                Text = parseResult.GetValue(text),
                Ids = parseResult.GetValue(ids),
                Tokenizer = parseResult.GetValue(tokenizer),
                Window = parseResult.GetValue(window) is int w ? AtLeast(w, 2, "--window") : null,
                Stride = parseResult.GetValue(stride) is int s ? AnalyzeCommand.Positive(s, "--stride") : null,
                MaxTokens = parseResult.GetValue(maxTokens) is int m ? AnalyzeCommand.Positive(m, "--max-tokens") : null,
                Bos = bosMode,
                BatchSize = parseResult.GetValue(batch) is int b ? AnalyzeCommand.Positive(b, "--batch-size") : 1,
                Device = AnalyzeCommand.ParseDevice(parseResult.GetValue(device)),
                Latency = !timed ? null : new LatencySettings
                {
                    Repetitions = parseResult.GetValue(repetitions) is int r ? AnalyzeCommand.Positive(r, "--repetitions") : 5,
                    DecodeTokens = parseResult.GetValue(decodeTokens) is int d ? AnalyzeCommand.Positive(d, "--decode-tokens") : 16,
                },
            };
            return Execute(request, parseResult.GetValue(json), parseResult.GetValue(force), context.Out, context.Error,
                "onnx-outliers " + string.Join(' ', parseResult.Tokens.Select(t => t.Value)));
        }));
        return command;
    }

    public static int Execute(EvalRequest request, string? jsonPath, bool force, TextWriter stdout, TextWriter stderr, string? commandLine = null)
    {
        if (jsonPath is not null)
        {
            if (Directory.Exists(jsonPath)) throw new UsageException($"{jsonPath}: is a folder; --json names the file to write");
            if (File.Exists(jsonPath) && !force) throw new OutputExistsException(jsonPath, "exists");
        }
        var result = CalibrationProgressDisplay.Run(stderr, progress => ModelEvaluator.Evaluate(request, progress), "evaluating") with { CommandLine = commandLine };
        EvalSummary.Write(stdout, result);
        if (jsonPath is not null)
        {
            result.WriteJson(jsonPath, overwrite: true);
            stdout.WriteLine($"wrote {jsonPath}");
        }
        return ErrorHandler.Success;
    }

    private static int AtLeast(int value, int minimum, string option) => value >= minimum ? value : throw new UsageException($"{option} must be at least {minimum}, not {value}");
}
