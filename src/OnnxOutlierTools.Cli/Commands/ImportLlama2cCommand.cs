using System.CommandLine;
using OnnxOutlierTools.Import;

namespace OnnxOutlierTools.Cli.Commands;

/// <summary><c>import-llama2c CHECKPOINT -o DIR [--flavour F] [--fp16] [--force]</c>: a llama2.c checkpoint as an ONNX decoder folder.</summary>
public static class ImportLlama2cCommand
{
    public static Command Create(CliContext context)
    {
        var checkpoint = new Argument<string>("CHECKPOINT") { Description = "A llama2.c checkpoint in the legacy format (7-int header, fp32 weights)." };
        // -o is a folder here (convert's -o is a file): the help name and text say so.
        var output = new Option<string>("--output", "-o")
        {
            Description = "The folder to write (created if needed; a folder, not a file): model.onnx, model.onnx.data and config.json go into it.",
            HelpName = "DIR",
            Required = true,
        };
        var force = new Option<bool>("--force", "-f")
        {
            Description = "Replace model.onnx, model.onnx.data and config.json in DIR if they exist; without it any of them existing is an error.",
        };
        var flavour = new Option<string>("--flavour")
        {
            Description = "decomposed (Optimum-like, no KV cache), decomposed-past (with past_key_values/present I/O), " +
                "genai-gqa (onnxruntime-genai builder style: SkipSimplifiedLayerNormalization + GroupQueryAttention + KV cache).",
            DefaultValueFactory = _ => "decomposed",
        };
        flavour.AcceptOnlyFromAmong([.. DecoderFolder.FlavourNames]);
        var fp16 = new Option<bool>("--fp16") { Description = "Store weights as FLOAT16 (norm statistics stay in float32)." };
        var command = new Command("import-llama2c", "Convert a llama2.c checkpoint into an ONNX decoder (see --flavour).")
        {
            checkpoint, output, flavour, fp16, force,
        };
        command.SetAction(parseResult => context.Guard(parseResult, () =>
        {
            var result = DecoderFolder.FromLlama2c(parseResult.GetValue(checkpoint)!, parseResult.GetValue(output)!,
                DecoderFolder.ParseFlavour(parseResult.GetValue(flavour)!), parseResult.GetValue(fp16), parseResult.GetValue(force));
            context.Out.WriteLine($"wrote {result.ModelPath}: {result.EmbeddedTensors} embedded, {result.ExternalTensors} external tensors " +
                $"({result.ExternalBytes:N0} bytes in {Path.GetFileName(result.DataPath ?? "-")}), config.json");
            return ErrorHandler.Success;
        }));
        return command;
    }
}
