using System.CommandLine;
using OnnxOutlierTools.Import;

namespace OnnxOutlierTools.Cli.Commands;

/// <summary><c>import-llama2c CHECKPOINT -o OUTDIR [--flavour F] [--fp16]</c>: a llama2.c checkpoint as an ONNX decoder folder.</summary>
public static class ImportLlama2cCommand
{
    public static Command Create(CliContext context)
    {
        var checkpoint = new Argument<string>("CHECKPOINT") { Description = "A llama2.c checkpoint in the legacy format (7-int header, fp32 weights)." };
        var output = new Option<string>("--output", "-o") { Description = "Output folder: model.onnx, model.onnx.data and config.json.", Required = true };
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
            checkpoint, output, flavour, fp16,
        };
        command.SetAction(parseResult => context.Guard(parseResult, () =>
        {
            var result = DecoderFolder.FromLlama2c(parseResult.GetValue(checkpoint)!, parseResult.GetValue(output)!,
                DecoderFolder.ParseFlavour(parseResult.GetValue(flavour)!), parseResult.GetValue(fp16));
            context.Out.WriteLine($"wrote {result.ModelPath}: {result.EmbeddedTensors} embedded, {result.ExternalTensors} external tensors " +
                $"({result.ExternalBytes:N0} bytes in {Path.GetFileName(result.DataPath ?? "-")}), config.json");
            return ErrorHandler.Success;
        }));
        return command;
    }
}
