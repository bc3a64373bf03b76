using System.CommandLine;
using System.Globalization;
using OnnxOutlierTools.Calibration.Text;
using OnnxOutlierTools.Cli.Analyze;
using OnnxOutlierTools.Cli.Quantize;
using OnnxOutlierTools.Quantization.Common;

namespace OnnxOutlierTools.Cli.Commands;

/// <summary><c>quantize MODEL --scheme NAME [--stats FILE | --text FILE [--tokenizer PATH]] [options] -o DIR</c>: quantizes the
/// recognized linears with a registered scheme, checks the result on ONNX Runtime against the original, optionally ranks the
/// sites by their cost, and writes the model folder with quantization.json.</summary>
public static class QuantizeCommand
{
    public static Command Create(CliContext context)
    {
        var model = new Argument<string>("MODEL") { Description = "The .onnx model (with its external data), or a model folder (found as for inspect)." };
        var scheme = new Option<string>("--scheme")
        {
            Description = "w8a8-static (int8 weights per channel, int8 activations per tensor from calibration), w8a8-dynamic (activations per token, " +
                "computed in the graph), int4-rtn, int4-awq (weight-only, blockwise).",
            HelpName = string.Join("|", QuantizationSchemes.KnownNames),
            Required = true,
        };
        var stats = new Option<string?>("--stats") { Description = "stats.json of analyze on this model: static activation scales (else --text is calibrated now).", HelpName = "FILE" };
        var text = new Option<string?>("--text") { Description = "Calibration text (UTF-8): statistics when --stats is not given, windows for the comparison and --attribute.", HelpName = "FILE" };
        var ids = new Option<string?>("--ids") { Description = "Pre-tokenized calibration ids instead of text (JSON array, or array of arrays).", HelpName = "FILE.json" };
        var tokenizer = new Option<string?>("--tokenizer") { Description = "Tokenizer file or folder; default: found beside the model.", HelpName = "PATH" };
        var output = new Option<string>("--output", "-o") { Description = "The folder to write: model.onnx with its data, the model's companions (config, tokenizer), quantization.json.", HelpName = "DIR", Required = true };
        var blockSize = new Option<int?>("--block-size") { Description = "int4: input channels per quantization block, a power of two from 16 (32, 64, 128; default 32).", HelpName = "N" };
        var accuracy = new Option<int?>("--accuracy-level") { Description = "int4 MatMulNBits accuracy_level: 0 (unset), 1 fp32, 2 fp16, 3 bf16, 4 int8 activations per block (default 0).", HelpName = "N" };
        var int4Format = new Option<string>("--int4-format") { Description = "int4: matmulnbits (com.microsoft MatMulNBits, default) or dq (opset-21 blocked DequantizeLinear + MatMul; the opset is raised to 21).", HelpName = "matmulnbits|dq", DefaultValueFactory = _ => "matmulnbits" };
        var asymmetric = new Option<bool>("--asymmetric") { Description = "int4: per-block zero points (default symmetric)." };
        var percentile = new Option<double?>("--percentile") { Description = "w8a8-static: the range is the P-th percentile of the per-token max |x| (e.g. 99.9) instead of the max.", HelpName = "P" };
        var includeHead = new Option<bool>("--include-head") { Description = "Also quantize the LM head (left in float by default)." };
        var includeEmbedding = new Option<bool>("--include-embedding") { Description = "Also store the token embedding table in int8 per row (dequantized before the Gather)." };
        var attention = new Option<bool>("--attention") { Description = "w8a8: also quantize the attention matmuls of decomposed attention (Q K^T and P V)." };
        var attribute = new Option<bool>("--attribute") { Description = "Error attribution: quantize each site alone and rank the sites by next-token KL against the original (needs --text or --ids)." };
        var attributeTop = new Option<int?>("--attribute-top") { Description = "Rows of the attribution table printed (default 10; all are in quantization.json).", HelpName = "N" };
        var seqLen = new Option<int?>("--seq-len") { Description = "Calibration window length (default: min(context, 512)).", HelpName = "N" };
        var maxTokens = new Option<int?>("--max-tokens") { Description = "Calibration token budget (default 2048).", HelpName = "N" };
        var bos = new Option<string>("--bos") { Description = "BOS at the start of each window: auto (off for a model with a baked sink prefix), on, off.", HelpName = "auto|on|off", DefaultValueFactory = _ => "auto" };
        var device = new Option<string>("--device") { Description = "auto, cpu or cuda (calibration; the comparison runs on the CPU unless cuda is asked for).", HelpName = "auto|cpu|cuda", DefaultValueFactory = _ => "auto" };
        var noCompare = new Option<bool>("--no-compare") { Description = "Do not run the quantized model against the original on the calibration windows." };
        var force = new Option<bool>("--force", "-f") { Description = "Replace DIR when an earlier quantize wrote it." };

        var command = new Command("quantize",
            "Quantize a model's recognized linears (every block's q/k/v, o, gate/up, down; the head and embedding only when asked) with a scheme: " +
            "W8A8 as int8 QDQ (weights per output channel; activations per tensor from calibration statistics, or per token computed in the graph) " +
            "that ONNX Runtime fuses into int8 kernels, or int4 weight-only. The result is loaded and compared with the original on ONNX Runtime; " +
            "--attribute ranks the sites by what quantizing each alone costs.")
        {
            model, scheme, stats, text, ids, tokenizer, output, blockSize, accuracy, int4Format, asymmetric, percentile, includeHead, includeEmbedding, attention,
            attribute, attributeTop, seqLen, maxTokens, bos, device, noCompare, force,
        };
        command.SetAction(parseResult => context.Guard(parseResult, () =>
        {
            if (!BosPolicy.TryParse(parseResult.GetValue(bos), out var bosMode)) throw new UsageException($"--bos must be auto, on or off, not '{parseResult.GetValue(bos)}'");
            var options = new QuantizationOptions
            {
                IncludeLmHead = parseResult.GetValue(includeHead),
                IncludeEmbedding = parseResult.GetValue(includeEmbedding),
                Attention = parseResult.GetValue(attention),
                Percentile = parseResult.GetValue(percentile) is double p ? Percentile(p) : null,
                BlockSize = parseResult.GetValue(blockSize) is int b ? BlockSize(b) : 32,
                AccuracyLevel = parseResult.GetValue(accuracy) is int a ? AccuracyLevel(a) : 0,
                Symmetric = !parseResult.GetValue(asymmetric),
                Int4Format = parseResult.GetValue(int4Format)?.ToLowerInvariant() switch
                {
                    "matmulnbits" => Quantization.Int4.Int4Format.MatMulNBits,
                    "dq" => Quantization.Int4.Int4Format.BlockedDequantize,
                    var other => throw new UsageException($"--int4-format must be matmulnbits or dq, not '{other}'"),
                },
            };
            var request = new QuantizeRequest
            {
                Model = parseResult.GetValue(model)!,
                Scheme = parseResult.GetValue(scheme)!,
                Stats = parseResult.GetValue(stats),
                Text = parseResult.GetValue(text),
                Ids = parseResult.GetValue(ids),
                Tokenizer = parseResult.GetValue(tokenizer),
                Output = parseResult.GetValue(output)!,
                SequenceLength = parseResult.GetValue(seqLen) is int s ? AnalyzeCommand.Positive(s, "--seq-len") : null,
                MaxTokens = parseResult.GetValue(maxTokens) is int m ? AnalyzeCommand.Positive(m, "--max-tokens") : 2048,
                Bos = bosMode,
                Device = AnalyzeCommand.ParseDevice(parseResult.GetValue(device)),
                Options = options,
                Attribute = parseResult.GetValue(attribute),
                AttributeTop = parseResult.GetValue(attributeTop) is int t ? AnalyzeCommand.Positive(t, "--attribute-top") : 10,
                Compare = !parseResult.GetValue(noCompare),
                Force = parseResult.GetValue(force),
            };
            return Execute(request, context.Out, context.Error, "onnx-outliers " + string.Join(' ', parseResult.Tokens.Select(t => t.Value)));
        }));
        return command;
    }

    public static int Execute(QuantizeRequest request, TextWriter stdout, TextWriter stderr, string? commandLine = null)
    {
        var outcome = CalibrationProgressDisplay.Run(stderr, progress => QuantizeRun.Execute(request, stderr, progress, commandLine));
        QuantizationSummary.Write(stdout, outcome, request.AttributeTop);
        stdout.WriteLine($"wrote {Path.GetDirectoryName(outcome.ModelPath)} ({Path.GetFileName(outcome.ModelPath)}, {QuantizeRun.ReportFile})");
        return ErrorHandler.Success;
    }

    private static double Percentile(double p) =>
        p > 0 && p <= 100 ? p : throw new UsageException($"--percentile must be in (0, 100], not {p.ToString(CultureInfo.InvariantCulture)}");

    private static int BlockSize(int b) =>
        b >= 16 && (b & (b - 1)) == 0 ? b : throw new UsageException($"--block-size must be a power of two of 16 or more (32, 64, 128), not {b}");

    private static int AccuracyLevel(int a) => a is >= 0 and <= 4 ? a : throw new UsageException($"--accuracy-level must be 0 to 4, not {a}");
}
