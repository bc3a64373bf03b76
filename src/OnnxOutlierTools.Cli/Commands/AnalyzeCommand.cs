using System.CommandLine;
using System.Globalization;
using OnnxOutlierTools.Analysis;
using OnnxOutlierTools.Calibration;
using OnnxOutlierTools.Calibration.Text;
using OnnxOutlierTools.Cli.Analyze;
using OnnxOutlierTools.Probes;
using OnnxOutlierTools.Reporting;
using OnnxOutlierTools.Runtime;

namespace OnnxOutlierTools.Cli.Commands;

/// <summary><c>analyze MODEL --text FILE|--ids FILE.json [--tokenizer PATH] -o DIR ...</c>: calibrates the probed model on
/// ONNX Runtime and writes stats.json, report.json and report.html, with a short console summary.</summary>
public static class AnalyzeCommand
{
    public static Command Create(CliContext context)
    {
        var model = new Argument<string>("MODEL") { Description = "The .onnx model (with its external data), or a model folder (found as for inspect)." };
        var text = new Option<string?>("--text") { Description = "Calibration text (UTF-8). Decoders get windows of --seq-len tokens; encoders [CLS] ... [SEP] segments of whole sentences.", HelpName = "FILE" };
        var ids = new Option<string?>("--ids") { Description = "Pre-tokenized calibration ids instead of text: a JSON array of ids, or an array of arrays (one sequence each).", HelpName = "FILE.json" };
        var tokenizer = new Option<string?>("--tokenizer")
        {
            Description = "Tokenizer file or folder (tokenizer.json, tokenizer.model, vocab.txt, *.tiktoken, llama2.c tokenizer.bin); default: found beside the model.",
            HelpName = "PATH",
        };
        var output = new Option<string>("--output", "-o") { Description = "Folder to write stats.json, report.json and report.html into (created if needed).", HelpName = "DIR", Required = true };
        var seqLen = new Option<int?>("--seq-len") { Description = "Window length in tokens (default: min(context, 512); not above the model's context).", HelpName = "N" };
        var maxTokens = new Option<int?>("--max-tokens") { Description = "Token budget over all windows (default 4096).", HelpName = "N" };
        var bos = new Option<string>("--bos")
        {
            Description = "BOS at the start of each decoder window: auto (when the tokenizer prepends it: SentencePiece/Llama, llama2.c; not GPT-2's byte-level BPE), on, off.",
            HelpName = "auto|on|off",
            DefaultValueFactory = _ => "auto",
        };
        var batch = new Option<int?>("--batch-size") { Description = "Windows of equal length per run (default 1).", HelpName = "N" };
        var probe = new Option<string[]>("--probe")
        {
            Description = "What to probe (as for the probe command): residual, linear-inputs, attention-input, o-input, ffn-input, down-input, attention, all (default), or tensor names.",
            HelpName = "KINDS|TENSORS",
        };
        var topK = new Option<int?>("--top-k") { Description = "Entries of the global top-k |x| list per point and run (default 32).", HelpName = "N" };
        var positions = new Option<int?>("--attention-positions") { Description = "Leading key positions whose attention mass is measured (default 8).", HelpName = "P" };
        var device = new Option<string>("--device")
        {
            Description = "auto (CUDA when ONNX Runtime's CUDA provider loads, else the CPU with a one-line note), cpu, or cuda (an error when unavailable).",
            HelpName = "auto|cpu|cuda",
            DefaultValueFactory = _ => "auto",
        };
        var massiveAbs = new Option<double?>("--massive-abs") { Description = "Massive activation, Sun et al. rule: |x| above this (default 100) ...", HelpName = "X" };
        var massiveRatio = new Option<double?>("--massive-ratio") { Description = "... and at least this times the token's median |x| (default 1000).", HelpName = "R" };
        var relativeRatio = new Option<double?>("--relative-ratio") { Description = "Massive activation, relative rule for small models: ratio to the median only (default 100).", HelpName = "R" };
        var channelRatio = new Option<double?>("--channel-ratio") { Description = "Channel-wise outlier: channel max |x| at least this times the median channel's (default 10).", HelpName = "R" };
        var sinkMass = new Option<double?>("--sink-mass") { Description = "Attention sink: a head's mean probability on one position above this (default 0.5).", HelpName = "P" };
        var force = new Option<bool>("--force", "-f") { Description = "Replace stats.json, report.json and report.html in DIR if they exist." };

        var command = new Command("analyze",
            "Find the activation outliers of a model on calibration text: one pass through ONNX Runtime over a probed copy of the graph " +
            "(held in memory; the model file is not written) gives per-point statistics; the report says where massive activations and " +
            "channel-wise outliers are, where they are born (block, down-projection input, super weight), which norm gains and W_q channels " +
            "cause them, which tokens carry them, what exceeds the fp16 range, and which heads are attention sinks.")
        {
            model, text, ids, tokenizer, output, seqLen, maxTokens, bos, batch, probe, topK, positions, device,
            massiveAbs, massiveRatio, relativeRatio, channelRatio, sinkMass, force,
        };
        command.SetAction(parseResult => context.Guard(parseResult, () =>
        {
            var probes = new ProbeSettings();
            if (parseResult.GetValue(topK) is int k) probes = probes with { TopK = Positive(k, "--top-k") };
            if (parseResult.GetValue(positions) is int p) probes = probes with { AttentionPositions = Positive(p, "--attention-positions") };
            probes = ProbeSelection.Apply(probes, parseResult.GetValue(probe) ?? []);
            var analysis = new AnalysisSettings();
            if (parseResult.GetValue(massiveAbs) is double ma) analysis = analysis with { MassiveAbsolute = NonNegative(ma, "--massive-abs") };
            if (parseResult.GetValue(massiveRatio) is double mr) analysis = analysis with { MassiveAbsoluteRatio = NonNegative(mr, "--massive-ratio") };
            if (parseResult.GetValue(relativeRatio) is double rr) analysis = analysis with { MassiveRelativeRatio = NonNegative(rr, "--relative-ratio") };
            if (parseResult.GetValue(channelRatio) is double cr) analysis = analysis with { ChannelRatio = NonNegative(cr, "--channel-ratio") };
            if (parseResult.GetValue(sinkMass) is double sm) analysis = analysis with { SinkMass = NonNegative(sm, "--sink-mass") };
            if (!BosPolicy.TryParse(parseResult.GetValue(bos), out var bosMode)) throw new UsageException($"--bos must be auto, on or off, not '{parseResult.GetValue(bos)}'");
            var request = new AnalyzeRequest
            {
                Model = parseResult.GetValue(model)!,
                Text = parseResult.GetValue(text),
                Ids = parseResult.GetValue(ids),
                Tokenizer = parseResult.GetValue(tokenizer),
                Output = parseResult.GetValue(output)!,
                SequenceLength = parseResult.GetValue(seqLen) is int s ? Positive(s, "--seq-len") : null,
                MaxTokens = parseResult.GetValue(maxTokens) is int m ? Positive(m, "--max-tokens") : 4096,
                Bos = bosMode,
                BatchSize = parseResult.GetValue(batch) is int b ? Positive(b, "--batch-size") : 1,
                Device = ParseDevice(parseResult.GetValue(device)),
                Probes = probes,
                Analysis = analysis,
                Force = parseResult.GetValue(force),
            };
            return Execute(request, context.Out, context.Error, "onnx-outliers " + string.Join(' ', parseResult.Tokens.Select(t => Quote(t.Value))));
        }));
        return command;
    }

    public static int Execute(AnalyzeRequest request, TextWriter stdout, TextWriter stderr, string? commandLine = null)
    {
        AnalyzeOutcome outcome;
        try
        {
            outcome = CalibrationProgressDisplay.Run(stderr, progress => AnalyzeRun.Execute(request, stderr, progress, commandLine));
        }
        catch (StructureNotRecognizedException ex)
        {
            stderr.WriteLine($"error: {ErrorHandler.OneLine(ex.Message)} (see inspect --layers --explain)");
            return ErrorHandler.NotRecognized;
        }
        ConsoleSummary.Write(stdout, outcome.Statistics, outcome.Analysis);
        stdout.WriteLine($"wrote {outcome.StatsPath}, {outcome.ReportJsonPath}, {outcome.ReportHtmlPath}");
        return ErrorHandler.Success;
    }

    internal static ExecutionDevice ParseDevice(string? text) => text?.ToLowerInvariant() switch
    {
        "auto" => ExecutionDevice.Auto,
        "cpu" => ExecutionDevice.Cpu,
        "cuda" => ExecutionDevice.Cuda,
        _ => throw new UsageException($"--device must be auto, cpu or cuda, not '{text}'"),
    };

    internal static int Positive(int value, string option) => value >= 1 ? value : throw new UsageException($"{option} must be at least 1, not {value}");

    private static double NonNegative(double value, string option) =>
        double.IsFinite(value) && value >= 0 ? value : throw new UsageException($"{option} must be a finite number of 0 or more, not {value.ToString(CultureInfo.InvariantCulture)}");

    private static string Quote(string token) => token.Any(c => char.IsWhiteSpace(c) || c is '"' or '\'') ? "'" + token.Replace("'", "'\\''") + "'" : token;
}
