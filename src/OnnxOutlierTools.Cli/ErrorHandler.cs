using System.CommandLine;
using System.Text;
using OnnxOutlierTools.IO;

namespace OnnxOutlierTools.Cli;

/// <summary>A command line that is valid for the parser but not for the command (conflicting options).</summary>
public sealed class UsageException(string message) : Exception(message);

/// <summary>Turns failures into exit codes and exactly one <c>error: ...</c> line on stderr (plus the
/// stack trace with <c>--verbose</c>).</summary>
public static class ErrorHandler
{
    public const int Success = 0;
    public const int InternalError = 1;
    public const int BadInput = 2;
    /// <summary><c>inspect --layers</c> found no transformer structure (the report says why).</summary>
    public const int NotRecognized = 3;
    /// <summary><c>mitigate</c>: a rewrite meant to be exact failed its equivalence proof (nothing is written).</summary>
    public const int NotExact = 3;

    public static int Report(Exception ex, bool verbose, TextWriter stderr)
    {
        int code;
        string message;
        switch (ex)
        {
            case OutputExistsException:
                code = BadInput;
                message = ex.Message + "; add --force to replace it";
                break;
            // Already "<path>: <problem>", one line, fit to show as is.
            case ModelLoadException or ModelSaveException or UsageException or Import.Llama2cFormatException
                or Calibration.CalibrationException or Calibration.Text.CalibrationInputException or Runtime.RuntimeSetupException or Runtime.ModelRunException
                or Reporting.Stats.StatsFileException or Mitigation.MitigationInputException or Mitigation.Folding.FoldRefusedException or Mitigation.SinkBias.SinkBiasException
                or Quantization.Common.QuantizationInputException or Evaluation.EvaluationInputException:
                code = BadInput;
                message = ex.Message;
                break;
            // A pass refused its input (already quantized weights, nothing to act on): the pass's own one line.
            case Passes.PassException { InnerException: Mitigation.MitigationInputException or Mitigation.Folding.FoldRefusedException or Mitigation.SinkBias.SinkBiasException
                or Quantization.Common.QuantizationInputException }:
                code = BadInput;
                message = ex.Message;
                break;
            case Analyze.StructureNotRecognizedException:
                code = NotRecognized;
                message = ex.Message;
                break;
            // A rewrite meant to be exact is not: its proof failed, nothing was written.
            case Mitigation.Verification.NotEquivalentException or Mitigation.Pipeline.RewriteFailedException:
                code = NotExact;
                message = ex.Message;
                break;
            default:
                code = InternalError;
                message = $"internal error ({ex.GetType().Name}): {ex.Message}" + (verbose ? "" : " (run with --verbose for details)");
                break;
        }
        stderr.WriteLine("error: " + OneLine(message));
        if (verbose) stderr.WriteLine(ex.ToString());
        return code;
    }

    /// <summary>Parse errors (unknown options, missing arguments, conflicting options): one line each,
    /// with a suggestion for a mistyped name, then where to find the usage.</summary>
    public static int ReportUsage(ParseResult parseResult, TextWriter stderr)
    {
        foreach (var line in UsageErrors.Lines(parseResult)) stderr.WriteLine("error: " + line);
        var command = parseResult.CommandResult.Command;
        string name = command is RootCommand ? "onnx-outliers" : "onnx-outliers " + command.Name;
        stderr.WriteLine($"Run '{name} --help' for usage.");
        return BadInput;
    }

    /// <summary>A <c>warning: ...</c> line: the command goes on (and succeeds).</summary>
    public static void Warn(TextWriter stderr, string message) => stderr.WriteLine("warning: " + OneLine(message));

    /// <summary>Escapes line breaks and other control characters (file names and tensor names come
    /// from user files) so a message stays on one line.</summary>
    public static string OneLine(string message) => Text.Printable.Escape(message);
}
