using System.CommandLine;
using System.Globalization;
using OnnxOutlierTools.Calibration.Text;
using OnnxOutlierTools.Cli.Analyze;
using OnnxOutlierTools.Cli.Mitigate;
using OnnxOutlierTools.Mitigation.Clipping;
using OnnxOutlierTools.Mitigation.Folding;
using OnnxOutlierTools.Mitigation.Pipeline;
using OnnxOutlierTools.Runtime;

namespace OnnxOutlierTools.Cli.Commands;

/// <summary><c>mitigate MODEL (--stats FILE | --text FILE | --ids FILE) [steps] -o DIR</c>: rewrites the model against its
/// activation outliers, proves the exact rewrites on ONNX Runtime, measures the others, and writes the model folder.</summary>
public static class MitigateCommand
{
    public static Command Create(CliContext context)
    {
        var model = new Argument<string>("MODEL") { Description = "The .onnx model (with its external data), or a model folder (found as for inspect)." };
        var stats = new Option<string?>("--stats") { Description = "stats.json of analyze on this model (else the model is calibrated now on --text or --ids).", HelpName = "FILE" };
        var text = new Option<string?>("--text") { Description = "Calibration text (UTF-8): statistics when --stats is not given, and the inputs of the equivalence proof.", HelpName = "FILE" };
        var ids = new Option<string?>("--ids") { Description = "Pre-tokenized calibration ids instead of text (JSON array, or array of arrays).", HelpName = "FILE.json" };
        var tokenizer = new Option<string?>("--tokenizer") { Description = "Tokenizer file or folder; default: found beside the model.", HelpName = "PATH" };
        var output = new Option<string>("--output", "-o") { Description = "The folder to write: model.onnx with its data, the model's companions (config, tokenizer), mitigation.json.", HelpName = "DIR", Required = true };
        var foldNorms = new Option<string?>("--fold-norms")
        {
            Description = "Fold the norms' gains into the linears that read them (exact): gamma (s = gamma, the gain becomes 1) or abs (s = |gamma|, signs stay).",
            HelpName = "gamma|abs",
            Arity = ArgumentArity.ZeroOrOne,
        };
        var smooth = new Option<string?>("--smooth")
        {
            Description = "SmoothQuant scales folded into the weights (exact): a migration strength alpha in [0, 1] (0.5 in the paper, 0.8-0.9 for Llama-family models), " +
                "or auto: per site the alpha of 0, 0.05, ..., 1 whose int8 fake-quantized outputs (per-token activations, per-channel weights) are closest to the float ones on captured calibration activations.",
            HelpName = "ALPHA|auto",
        };
        var sites = new Option<string?>("--sites")
        {
            Description = "Sites of --fold-norms and --smooth, comma-separated: qkv, gate-up, fc1, v-o, up-down (default: qkv,gate-up,fc1, the norm sites).",
            HelpName = "LIST",
        };
        var inexact = new Option<string>("--inexact")
        {
            Description = "Where a norm's output has other readers than the site's linears (post-norm residuals, a tied head): mul inserts an explicit Mul by 1/s before the linears (exact, one node at run time), skip leaves the site.",
            HelpName = "mul|skip",
            DefaultValueFactory = _ => "mul",
        };
        var fp16Safe = new Option<bool>("--fp16-safe") { Description = "Rescale by powers of two (exact) where values reach the fp16 range (within 4x of 65504), so the model runs in fp16." };
        var sinkBias = new Option<bool>("--sink-bias")
        {
            Description = "Bake the BOS token's keys and values into every attention layer (exact): the model is then fed the text WITHOUT BOS, and the massive activation BOS carried never appears at run time.",
        };
        var sinkPrefix = new Option<string?>("--sink-prefix")
        {
            Description = "As --sink-bias with several tokens: auto (BOS, then the tokens analyze found carrying massive activations) or comma-separated token ids; the model is fed the text without them.",
            HelpName = "auto|TOKENS",
        };
        var clipMa = new Option<bool>("--clip-ma") { Description = "Clamp the neurons that write each massive activation at its birth point (not exact: its cost is measured and printed)." };
        var seqLen = new Option<int?>("--seq-len") { Description = "Calibration window length (default: min(context, 512)).", HelpName = "N" };
        var maxTokens = new Option<int?>("--max-tokens") { Description = "Calibration token budget (default 2048).", HelpName = "N" };
        var bos = new Option<string>("--bos") { Description = "BOS at the start of each window: auto, on, off.", HelpName = "auto|on|off", DefaultValueFactory = _ => "auto" };
        var proofWindows = new Option<int?>("--proof-windows") { Description = "Calibration windows the equivalence proof runs (default 2).", HelpName = "N" };
        var device = new Option<string>("--device") { Description = "auto, cpu or cuda (calibration; proofs run on the CPU unless cuda is asked for).", HelpName = "auto|cpu|cuda", DefaultValueFactory = _ => "auto" };
        var noCompare = new Option<bool>("--no-compare") { Description = "Do not probe the result again for the before/after figures." };
        var force = new Option<bool>("--force", "-f") { Description = "Replace DIR when an earlier mitigate wrote it." };

        var command = new Command("mitigate",
            "Rewrite a model against its activation outliers: norm gains and SmoothQuant scales folded into the weights, fp16-safe " +
            "power-of-two rescaling, clipping at the birth point, the explicit attention bias (BOS keys and values baked in). Steps run in a fixed order " +
            "(fold-norms, smooth, fp16-safe, clip-ma, sink-bias); " +
            "every exact rewrite is proven on ONNX Runtime against the model before it (exit 3 and nothing written when it is not exact), " +
            "clipping's cost is measured, and the result is probed again for outlier statistics before and after.")
        {
            model, stats, text, ids, tokenizer, output, foldNorms, smooth, sites, inexact, fp16Safe, clipMa, sinkBias, sinkPrefix, seqLen, maxTokens, bos, proofWindows, device, noCompare, force,
        };
        command.SetAction(parseResult => context.Guard(parseResult, () =>
        {
            var siteKinds = ParseSites(parseResult.GetValue(sites));
            var policy = parseResult.GetValue(inexact)?.ToLowerInvariant() switch
            {
                "mul" => InexactPolicy.Mul,
                "skip" => InexactPolicy.Skip,
                var other => throw new UsageException($"--inexact must be mul or skip, not '{other}'"),
            };
            var steps = new List<MitigationStep>();
            if (parseResult.GetResult(foldNorms) is not null)
            {
                bool keepSigns = parseResult.GetValue(foldNorms)?.ToLowerInvariant() switch
                {
                    null or "" or "gamma" => false,
                    "abs" => true,
                    var other => throw new UsageException($"--fold-norms takes gamma or abs, not '{other}'"),
                };
                steps.Add(new FoldNormsStep(keepSigns, siteKinds, policy));
            }
            if (parseResult.GetValue(smooth) is { } alphaText)
            {
                if (alphaText.Equals("auto", StringComparison.OrdinalIgnoreCase)) steps.Add(new SmoothStep(null, siteKinds, policy));
                else if (!double.TryParse(alphaText, NumberStyles.Float, CultureInfo.InvariantCulture, out double alpha) || alpha is < 0 or > 1 || double.IsNaN(alpha))
                    throw new UsageException($"--smooth takes an alpha in [0, 1] or auto, not '{alphaText}'");
                else steps.Add(new SmoothStep(alpha, siteKinds, policy));
            }
            if (parseResult.GetValue(fp16Safe)) steps.Add(new Fp16SafeStep());
            if (parseResult.GetValue(clipMa)) steps.Add(new ClipMaStep(new ClipMaSettings()));
            if (parseResult.GetValue(sinkPrefix) is { } prefix)
            {
                if (parseResult.GetValue(sinkBias)) throw new UsageException("--sink-bias and --sink-prefix both bake a prefix: give one (--sink-prefix includes BOS)");
                steps.Add(new SinkBiasStep(prefix.Trim().ToLowerInvariant() == "auto" ? "auto" : prefix));
            }
            else if (parseResult.GetValue(sinkBias)) steps.Add(new SinkBiasStep());
            if (!BosPolicy.TryParse(parseResult.GetValue(bos), out var bosMode)) throw new UsageException($"--bos must be auto, on or off, not '{parseResult.GetValue(bos)}'");
            var request = new MitigateRequest
            {
                Model = parseResult.GetValue(model)!,
                Stats = parseResult.GetValue(stats),
                Text = parseResult.GetValue(text),
                Ids = parseResult.GetValue(ids),
                Tokenizer = parseResult.GetValue(tokenizer),
                Output = parseResult.GetValue(output)!,
                SequenceLength = parseResult.GetValue(seqLen) is int s ? Positive(s, "--seq-len") : null,
                MaxTokens = parseResult.GetValue(maxTokens) is int m ? Positive(m, "--max-tokens") : 2048,
                Bos = bosMode,
                ProofWindows = parseResult.GetValue(proofWindows) is int p ? Positive(p, "--proof-windows") : 2,
                Device = AnalyzeCommand.ParseDevice(parseResult.GetValue(device)),
                CompareStatistics = !parseResult.GetValue(noCompare),
                Force = parseResult.GetValue(force),
            };
            return Execute(request, steps, context.Out, context.Error, "onnx-outliers " + string.Join(' ', parseResult.Tokens.Select(t => t.Value)));
        }));
        return command;
    }

    public static int Execute(MitigateRequest request, IReadOnlyList<MitigationStep> steps, TextWriter stdout, TextWriter stderr, string? commandLine = null)
    {
        MitigateOutcome outcome;
        try
        {
            outcome = CalibrationProgressDisplay.Run(stderr, progress => MitigateRun.Execute(request, steps, stderr, progress, commandLine));
        }
        catch (StructureNotRecognizedException ex)
        {
            stderr.WriteLine($"error: {ErrorHandler.OneLine(ex.Message)} (see inspect --layers --explain)");
            return ErrorHandler.NotRecognized;
        }
        MitigationSummary.Write(stdout, outcome);
        stdout.WriteLine($"wrote {Path.GetDirectoryName(outcome.ModelPath)} ({Path.GetFileName(outcome.ModelPath)}, {MitigateRun.ReportFile})");
        return ErrorHandler.Success;
    }

    private static IReadOnlyList<FoldSiteKind> ParseSites(string? text)
    {
        if (string.IsNullOrWhiteSpace(text)) return FoldSiteKinds.NormSites;
        try { return FoldSiteKinds.Parse(text.ToLowerInvariant()); }
        catch (ArgumentException ex) { throw new UsageException($"--sites: {ex.Message.Split(" (Parameter")[0]}"); }
    }

    private static int Positive(int value, string option) => AnalyzeCommand.Positive(value, option);
}
