using System.CommandLine;
using System.Globalization;
using OnnxOutlierTools.IO;
using OnnxOutlierTools.Passes;
using OnnxOutlierTools.Passes.Fp16;

namespace OnnxOutlierTools.Cli.Commands;

/// <summary><c>convert MODEL -o OUT.onnx [--external-data [--threshold BYTES] | --embed] [--data-file NAME] [--fp16 [--fp16-io]] [--force] [--json]</c>:
/// re-saves a model with another tensor layout, optionally converted to float16.</summary>
public static class ConvertCommand
{
    public static Command Create(CliContext context)
    {
        var model = new Argument<string>("MODEL")
        {
            Description = "The .onnx model to read (with its external data), or a model folder (found as for inspect).",
        };
        var output = new Option<string>("--output", "-o")
        {
            Description = "The .onnx file to write (a file, not a folder); must differ from MODEL. An external data file goes beside it.",
            HelpName = "OUT.onnx",
            Required = true,
        };
        var external = new Option<bool>("--external-data")
        {
            Description = "Store tensors of at least --threshold bytes in one external data file.",
        };
        var threshold = new Option<long?>("--threshold")
        {
            Description = "With --external-data: the smallest tensor, in bytes, to store externally (default 1024).",
            HelpName = "BYTES",
        };
        threshold.CustomParser = result =>
        {
            string text = result.Tokens.Count > 0 ? result.Tokens[0].Value : "";
            if (long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out long bytes)) return bytes;
            result.AddError($"--threshold must be a whole number of bytes (0 or more), not '{text}'.");
            return null;
        };
        var embed = new Option<bool>("--embed")
        {
            Description = "Embed all tensors in the .onnx file (models above the 2 GB protobuf limit still need external data; a warning says so).",
        };
        var dataFile = new Option<string?>("--data-file")
        {
            Description = "Name of the external data file, in the output folder (default: OUT.onnx's name + \".data\", as in out.onnx.data). " +
                "Not with --embed; a warning says when no tensor went external, so it was not used.",
            HelpName = "NAME",
        };
        var force = new Option<bool>("--force", "-f")
        {
            Description = "Replace OUT.onnx (and its data file) if it exists; without it an existing output is an error.",
        };
        var json = new Option<bool>("--json")
        {
            Description = "Write the result (files, sizes, tensor counts, warnings) as JSON instead of the text line.",
        };
        var fp16 = new Option<bool>("--fp16")
        {
            Description = "Convert float32 weights and computation to float16, keeping precision-critical ops (norm reductions, Softmax, " +
                "rotary angles) in float32 with Casts; graph inputs and outputs stay float32 unless --fp16-io.",
        };
        var fp16Io = new Option<bool>("--fp16-io") { Description = "With --fp16: convert the float32 graph inputs and outputs (KV caches included) too." };
        // Lowers the 2 GB protobuf limit so tests can exercise the forced-external path cheaply.
        var protobufLimit = new Option<long?>("--protobuf-limit") { Hidden = true };

        var command = new Command("convert",
            "Re-save a model with a chosen tensor layout: as it is (default: external tensors stay external, " +
            "embedded stay embedded), all embedded (--embed) or large tensors external (--external-data). " +
            "The write is atomic; the input is never overwritten.")
        {
            model, output, external, threshold, embed, dataFile, fp16, fp16Io, force, json, protobufLimit,
        };
        command.Validators.Add(result =>
        {
            bool wantsExternal = result.GetValue(external), wantsEmbed = result.GetValue(embed);
            if (wantsExternal && wantsEmbed) result.AddError("--external-data and --embed cannot be used together.");
            if (!wantsExternal && result.GetResult(threshold) is { Implicit: false })
                result.AddError("--threshold applies only with --external-data.");
            // A name for a file that --embed promises not to write is a mistake, not a preference.
            if (wantsEmbed && result.GetResult(dataFile) is { Implicit: false })
                result.AddError("--data-file names the external data file, and --embed writes none; drop one of them.");
            if (result.GetValue(fp16Io) && !result.GetValue(fp16)) result.AddError("--fp16-io applies only with --fp16.");
        });

        command.SetAction(parseResult => context.Guard(parseResult, () =>
        {
            var layout = parseResult.GetValue(external) ? TensorLayout.External
                : parseResult.GetValue(embed) ? TensorLayout.Embed
                : TensorLayout.Preserve;
            var options = new SaveOptions
            {
                Layout = layout,
                ExternalThreshold = parseResult.GetValue(threshold) ?? new SaveOptions().ExternalThreshold,
                DataFileName = parseResult.GetValue(dataFile),
                ProtobufLimit = parseResult.GetValue(protobufLimit) ?? new SaveOptions().ProtobufLimit,
                Overwrite = parseResult.GetValue(force),
            };
            var half = parseResult.GetValue(fp16) ? new Fp16Options { KeepIoTypes = !parseResult.GetValue(fp16Io) } : null;
            return Execute(parseResult.GetValue(model)!, parseResult.GetValue(output)!, options, context.Out, context.Error, parseResult.GetValue(json), half);
        }));
        return command;
    }

    public static int Execute(string input, string output, SaveOptions options, TextWriter stdout, TextWriter stderr, bool json = false, Fp16Options? fp16 = null)
    {
        CheckOutputIsAFile(output);
        SaveResult result;
        string modelPath = ModelLocator.Locate(input);
        using (var model = ModelReader.Load(modelPath))
        {
            if (fp16 is not null) Fp16(model, modelPath, fp16, stderr);
            result = ModelWriter.Save(model, output, options);
        }

        var warnings = new List<string>();
        if (result.ForcedExternal && options.Layout != TensorLayout.External)
            warnings.Add($"{output}: the model exceeds the {N(options.ProtobufLimit)}-byte protobuf limit, " +
                $"so {N(result.ExternalTensors)} tensors were stored in external data ({Path.GetFileName(result.DataPath)}) " +
                $"although {(options.Layout == TensorLayout.Embed ? "--embed was asked" : "the layout was to be preserved")}");
        // Only the save knows whether anything went external; a name that was not used must not pass unnoticed.
        if (options.DataFileName is { } name && result.ExternalTensors == 0)
            warnings.Add($"--data-file '{name}' had no effect: no tensor was stored in external data " +
                (options.Layout == TensorLayout.External
                    ? $"(none has --threshold {N(options.ExternalThreshold)} bytes or more)"
                    : "(the model has none; add --external-data to move tensors there)"));
        foreach (string warning in warnings.Concat(result.Warnings)) ErrorHandler.Warn(stderr, warning);

        var report = WriteReport.From("convert", modelPath, result, options.Layout.ToString().ToLowerInvariant(), warnings);
        stdout.WriteLine(json ? report.ToJson() : report.ToText(output));
        return ErrorHandler.Success;
    }

    private static void Fp16(Ir.Model model, string modelPath, Fp16Options fp16, TextWriter stderr)
    {
        PassResult conversion;
        try { conversion = model.Apply(new Fp16Conversion(fp16)); }
        catch (PassException ex) when (ex.InnerException is InvalidOperationException reason)
        {
            throw new UsageException($"{modelPath}: cannot convert to fp16: {reason.Message}");
        }
        stderr.WriteLine($"note: fp16: {conversion.Count(Fp16Conversion.ConvertedInitializers)} initializers and {conversion.Count(Fp16Conversion.ConvertedValues)} values " +
            $"converted, {conversion.Count(Fp16Conversion.KeptFloat32Nodes)} nodes kept in float32, {conversion.Count(Fp16Conversion.InsertedCasts)} Casts inserted" +
            (conversion.Count(Fp16Conversion.SaturatedElements) > 0 ? $", {conversion.Count(Fp16Conversion.SaturatedElements)} weight elements beyond +-65504 saturated" : ""));
    }

    /// <summary>convert's -o is a file and import-llama2c's a folder: a folder given here is that mix-up,
    /// said before any work (and before a folder named like it could be left behind).</summary>
    private static void CheckOutputIsAFile(string output)
    {
        string example = Path.Combine(output, "model.onnx");
        if (Directory.Exists(output))
            throw new UsageException($"{output}: is a directory; convert -o names the .onnx file to write (for example {example})");
        if (output.EndsWith(Path.DirectorySeparatorChar) || output.EndsWith(Path.AltDirectorySeparatorChar))
            throw new UsageException($"{output}: ends in a separator, so names a directory; convert -o names the .onnx file to write (for example {example})");
    }

    private static string N(long value) => value.ToString("N0", CultureInfo.InvariantCulture);
}
