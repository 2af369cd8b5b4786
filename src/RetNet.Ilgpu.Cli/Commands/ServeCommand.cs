using System.CommandLine;
using RetNet.Ilgpu.Generation;
using RetNet.Ilgpu.Generation.ChatTemplates;
using RetNet.Ilgpu.Serving;
using RetNet.Ilgpu.Tokenizers;

namespace RetNet.Ilgpu.Cli.Commands;

/// <summary><c>retnet serve</c>: an OpenAI-compatible HTTP server over one model, with continuous batching.</summary>
internal static class ServeCommand
{
    public static Command Create()
    {
        var modelDir = new Option<DirectoryInfo>("--model") { Description = "A model folder.", Required = true };
        var host = new Option<string>("--host")
        {
            Description = "The address to listen on (default 127.0.0.1: loopback only).",
            DefaultValueFactory = _ => "127.0.0.1",
        };
        var port = new Option<int>("--port")
        {
            Description = "The port; 0 picks a free one and prints it.", DefaultValueFactory = _ => 8080,
        };
        var maxBatch = new Option<int>("--max-batch")
        {
            Description = "The most sequences decoded together in one step.", DefaultValueFactory = _ => 8,
        };
        var maxQueue = new Option<int>("--max-queue")
        {
            Description = "The most requests waiting for a slot; past it requests get 429.",
            DefaultValueFactory = _ => 64,
        };
        var maxContext = new Option<int>("--max-context")
        {
            Description = "The most positions per sequence (prompt and generated tokens); longer prompts get 400.",
            DefaultValueFactory = _ => 2048,
        };
        var modelId = new Option<string?>("--model-id")
        {
            Description = "The model's name in the API (default: the folder's name).",
        };
        var maxBody = new Option<long>("--max-body-bytes")
        {
            Description = "The largest request body in bytes; larger ones get 413.", DefaultValueFactory = _ => 1 << 20,
        };
        var tokenizer = CommonOptions.Tokenizer("byte, gpt2, sentencepiece (the model folder's tokenizer.model), or " +
                                                "auto (the folder's tokenizer.model if it has one, else by vocabulary size).");
        var chatTemplate = new Option<FileInfo?>("--chat-template")
        {
            Description = "A Jinja chat template file to render chat requests with, over the model folder's own " +
                          "(chat_template.jinja, else tokenizer_config.json's chat_template; without either, the " +
                          "plain 'User: …' format).",
        };
        var device = CommonOptions.Device();
        var weightType = CommonOptions.WeightType();
        var command = new Command("serve",
            "Serve a model over an OpenAI-compatible HTTP API (/v1/completions, /v1/chat/completions, /v1/models, " +
            "/health, /metrics) with continuous batching; Ctrl+C or SIGTERM stops it.")
        {
            modelDir, host, port, maxBatch, maxQueue, maxContext, modelId, maxBody, tokenizer, chatTemplate, device,
            weightType,
        };
        command.SetAction(parse => CommonOptions.Run(() =>
        {
            var folder = parse.GetValue(modelDir)!;
            var options = new ServerOptions
            {
                Host = parse.GetValue(host)!,
                Port = parse.GetValue(port),
                ModelId = parse.GetValue(modelId) ?? folder.Name,
                MaxBodyBytes = parse.GetValue(maxBody),
                Generation = new BatchedGeneratorOptions
                {
                    MaxBatch = parse.GetValue(maxBatch),
                    MaxQueue = parse.GetValue(maxQueue),
                    MaxContext = parse.GetValue(maxContext),
                },
            };
            using var opened = CommonOptions.OpenDevice(parse.GetValue(device));
            var model = CommonOptions.LoadAnyModel(opened, folder, parse.GetValue(weightType));
            ITextTokenizer text;
            IChatFormat chat;
            try
            {
                text = TextTokenizers.ForModel(parse.GetValue(tokenizer), folder.FullName, model.VocabSize)
                    ?? throw new ArgumentException($"--tokenizer auto: no tokenizer has the model's vocabulary of " +
                                                   $"{model.VocabSize}; choose one with --tokenizer.");
                chat = ChatFormats.FromModelFolder(folder.FullName, text, parse.GetValue(chatTemplate)?.FullName);
            }
            catch (ChatTemplateException e)
            {
                model.Dispose();
                throw new InvalidDataException($"The chat template of {folder.FullName} cannot be used: {e.Message}", e);
            }
            catch
            {
                model.Dispose();
                throw;
            }
            options = options with { ChatFormat = chat };
            var server = RetNetServer.StartAsync(model, text, options, ownsModel: true, handleSignals: true)
                .GetAwaiter().GetResult();
            Console.WriteLine($"serving {options.ModelId} ({model.Architecture}, tokenizer {text.Name}, chat " +
                              $"{(chat is TemplateChatFormat ? "template" : "plain format")}) at " +
                              $"{server.Address} (max batch {options.Generation.MaxBatch}, max queue " +
                              $"{options.Generation.MaxQueue}); Ctrl+C stops");
            Console.Out.Flush();
            server.WaitForShutdownAsync().GetAwaiter().GetResult();
            server.DisposeAsync().AsTask().GetAwaiter().GetResult();
            Console.WriteLine("stopped");
            return 0;
        }));
        return command;
    }
}
