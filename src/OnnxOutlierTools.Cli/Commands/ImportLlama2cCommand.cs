using System.CommandLine;
using OnnxOutlierTools.Import;

namespace OnnxOutlierTools.Cli.Commands;

/// <summary><c>import-llama2c CHECKPOINT -o DIR [--flavour F] [--tokenizer PATH] [--fp16] [--force] [--json]</c>: a llama2.c
/// checkpoint as an ONNX decoder folder; genai-gqa folders also get genai_config.json and the tokenizer as
/// tokenizer.json, so onnxruntime-genai runs them as written.</summary>
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
            Description = "Replace model.onnx, model.onnx.data and config.json (genai-gqa: also genai_config.json, tokenizer.json, tokenizer_config.json) in DIR if they exist; without it any of them existing is an error.",
        };
        var tokenizer = new Option<string?>("--tokenizer")
        {
            Description = "genai-gqa: the llama2.c tokenizer to write as tokenizer.json (default: tok{VOCAB}.bin or tokenizer.bin beside the checkpoint).",
            HelpName = "PATH",
        };
        var flavour = new Option<string>("--flavour")
        {
            Description = "decomposed (Optimum-like, no KV cache), decomposed-past (with past_key_values/present I/O), " +
                "genai-gqa (onnxruntime-genai builder style: SkipSimplifiedLayerNormalization + GroupQueryAttention + KV cache; " +
                "with genai_config.json, tokenizer.json and tokenizer_config.json, a folder onnxruntime-genai runs).",
            DefaultValueFactory = _ => "decomposed",
        };
        flavour.AcceptOnlyFromAmong([.. DecoderFolder.FlavourNames]);
        var fp16 = new Option<bool>("--fp16") { Description = "Store weights as FLOAT16 (norm statistics stay in float32)." };
        var json = new Option<bool>("--json")
        {
            Description = "Write the result (files, sizes, tensor counts, warnings) as JSON instead of the text line.",
        };
        var command = new Command("import-llama2c", "Convert a llama2.c checkpoint into an ONNX decoder (see --flavour).")
        {
            checkpoint, output, flavour, tokenizer, fp16, force, json,
        };
        command.SetAction(parseResult => context.Guard(parseResult, () =>
        {
            string input = parseResult.GetValue(checkpoint)!, folder = parseResult.GetValue(output)!, flavourName = parseResult.GetValue(flavour)!;
            bool half = parseResult.GetValue(fp16);
            var parsedFlavour = DecoderFolder.ParseFlavour(flavourName);
            string? tokenizerPath = parseResult.GetValue(tokenizer);
            if (tokenizerPath is not null && parsedFlavour != LlamaOnnxFlavour.GenAiGqa)
                throw new UsageException("--tokenizer is for --flavour genai-gqa (the other flavours write no tokenizer files)");
            var result = DecoderFolder.FromLlama2c(input, folder, parsedFlavour, half, parseResult.GetValue(force), tokenizerPath);
            foreach (string warning in result.Warnings) ErrorHandler.Warn(context.Error, warning);
            var report = WriteReport.From("import-llama2c", input, result, "external", [],
                config: Path.Combine(folder, "config.json"), flavour: flavourName, weightType: half ? "float16" : "float32");
            context.Out.WriteLine(parseResult.GetValue(json) ? report.ToJson() : report.ToText(result.ModelPath));
            return ErrorHandler.Success;
        }));
        return command;
    }
}
