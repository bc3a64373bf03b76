using System.CommandLine;
using OnnxOutlierTools.Cli.Analyze;
using OnnxOutlierTools.Cli.Run;

namespace OnnxOutlierTools.Cli.Commands;

/// <summary><c>run MODEL --text FILE -o DIR</c> and <c>run --demo</c>: inspect, analyze, mitigate, quantize the original and
/// the mitigated model, evaluate everything against the FP32 original, and write one report.</summary>
public static class RunCommand
{
    /// <summary>The bundled demo: the planted decoder of onnx-models/ and the text stories260K wrote, copied beside the tool.</summary>
    public static string DemoFolder => Path.Combine(AppContext.BaseDirectory, "demo", "planted-llama-decomposed");
    public const string DemoText = "demo-text.txt";
    public const string DemoOutput = "onnx-outliers-demo";

    public static Command Create(CliContext context)
    {
        var model = new Argument<string?>("MODEL") { Description = "The .onnx model or model folder (not with --demo).", Arity = ArgumentArity.ZeroOrOne };
        var demo = new Option<bool>("--demo") { Description = $"Run on the bundled planted model and its text (writes ./{DemoOutput} unless -o is given)." };
        var text = new Option<string?>("--text") { Description = "Calibration and evaluation text (UTF-8).", HelpName = "FILE" };
        var tokenizer = new Option<string?>("--tokenizer") { Description = "Tokenizer file or folder; default: found beside the model.", HelpName = "PATH" };
        var output = new Option<string?>("--output", "-o") { Description = "The folder to write (analysis/, mitigated/, quantized/, evaluation/, run.json, report.html).", HelpName = "DIR" };
        var recipe = new Option<string?>("--recipe") { Description = $"Mitigation steps instead of the default recipe, comma-separated: {string.Join(", ", RunRecipe.StepNames)}.", HelpName = "LIST" };
        var schemes = new Option<string?>("--schemes") { Description = $"Quantization schemes (default {string.Join(",", RunRecipe.DefaultSchemes)}).", HelpName = "LIST" };
        var calibrationTokens = new Option<int?>("--calibration-tokens") { Description = "Calibration token budget (default 2048).", HelpName = "N" };
        var evalTokens = new Option<int?>("--eval-tokens") { Description = "Evaluation token budget (default 2048).", HelpName = "N" };
        var seqLen = new Option<int?>("--seq-len") { Description = "Window length for calibration and evaluation (default: the model's).", HelpName = "N" };
        var noLatency = new Option<bool>("--no-latency") { Description = "Do not measure CPU latency." };
        var device = new Option<string>("--device") { Description = "cpu (default: the table's latency is CPU latency), cuda or auto.", HelpName = "cpu|cuda|auto", DefaultValueFactory = _ => "cpu" };
        var force = new Option<bool>("--force", "-f") { Description = "Replace DIR when an earlier run wrote it." };
        var command = new Command("run",
            "The whole pipeline: inspect, analyze, mitigate (default recipe per architecture), quantize the original and the mitigated model " +
            "(W8A8 static and dynamic, int4 RTN and AWQ), evaluate every model against the FP32 original (perplexity or cosine, KL, top-1, size, " +
            "CPU latency), and write run.json and report.html with the before/after table.")
        {
            model, demo, text, tokenizer, output, recipe, schemes, calibrationTokens, evalTokens, seqLen, noLatency, device, force,
        };
        command.SetAction(parseResult => context.Guard(parseResult, () =>
        {
            bool isDemo = parseResult.GetValue(demo);
            string? modelPath = parseResult.GetValue(model), textPath = parseResult.GetValue(text);
            if (isDemo)
            {
                if (modelPath is not null || textPath is not null) throw new UsageException("--demo runs the bundled model and text: give neither MODEL nor --text");
                if (!Directory.Exists(DemoFolder)) throw new UsageException($"{DemoFolder}: the bundled demo model is missing from this installation");
                (modelPath, textPath) = (DemoFolder, Path.Combine(DemoFolder, DemoText));
            }
            else if (modelPath is null || textPath is null) throw new UsageException("run needs MODEL and --text FILE (or --demo)");
            var request = new RunRequest
            {
                Model = modelPath,
                Text = textPath,
                Tokenizer = parseResult.GetValue(tokenizer),
                Output = parseResult.GetValue(output) ?? (isDemo ? DemoOutput : throw new UsageException("run needs -o DIR")),
                Recipe = parseResult.GetValue(recipe)?.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries),
                Schemes = parseResult.GetValue(schemes)?.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries) is { Length: > 0 } list
                    ? list.Select(s => s.ToLowerInvariant()).Distinct().ToList() : RunRecipe.DefaultSchemes,
                CalibrationTokens = parseResult.GetValue(calibrationTokens) is int c ? AnalyzeCommand.Positive(c, "--calibration-tokens") : 2048,
                EvalTokens = parseResult.GetValue(evalTokens) is int e ? AnalyzeCommand.Positive(e, "--eval-tokens") : 2048,
                SequenceLength = parseResult.GetValue(seqLen) is int s ? AnalyzeCommand.Positive(s, "--seq-len") : null,
                Latency = !parseResult.GetValue(noLatency),
                Device = AnalyzeCommand.ParseDevice(parseResult.GetValue(device)),
                Force = parseResult.GetValue(force),
            };
            return Execute(request, context.Out, context.Error, "onnx-outliers " + string.Join(' ', parseResult.Tokens.Select(t => t.Value)));
        }));
        return command;
    }

    public static int Execute(RunRequest request, TextWriter stdout, TextWriter stderr, string? commandLine = null)
    {
        RunOutcome outcome;
        try
        {
            outcome = CalibrationProgressDisplay.Run(stderr, progress => RunPipeline.Execute(request, stderr, progress, commandLine));
        }
        catch (StructureNotRecognizedException ex)
        {
            stderr.WriteLine($"error: {ErrorHandler.OneLine(ex.Message)} (see inspect --layers --explain)");
            return ErrorHandler.NotRecognized;
        }
        RunSummary.Write(stdout, outcome.Report);
        stdout.WriteLine($"wrote {outcome.ReportHtmlPath} and {outcome.ReportJsonPath}");
        return ErrorHandler.Success;
    }
}
